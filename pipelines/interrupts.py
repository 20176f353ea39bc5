"""Long-running commands (``ingest webhook``, ``ingest stream``, ``sample-stream``,
``sample-api``) stop on Ctrl-C and on SIGTERM, whatever signal dispositions they inherited.

Why: a shell without job control starts background commands with SIGINT ignored, and an
ignored signal survives fork and exec, so Python installs no KeyboardInterrupt handler and a
command that says "Ctrl-C stops" could then only be killed, skipping its cleanup (the Kafka
producer's flush, the broker it started). Seen in CI: the suite started in the background sent
SIGINT to ``ingest webhook`` and ``sample-stream`` and both ran on. Service managers and
``docker stop`` send SIGTERM, which deserves the same clean stop.
"""

from __future__ import annotations

import signal


def stop_on_signals() -> None:
    """From here on, SIGINT and SIGTERM raise KeyboardInterrupt in the main thread."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
