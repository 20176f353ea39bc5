"""Failpoints: named places where a test can make this process die with SIGKILL.

Crash safety is only proven by real crashes at every step that matters (stage, journal,
each rename, manifest...). Timing a ``kill -9`` from outside cannot hit a step that lasts a
millisecond, so the code names its steps with :func:`failpoint` and a test starts a real
process with ``BEAMWRIGHT_FAILPOINT=<name>``: when that step is reached the process sends
itself SIGKILL — no exception handler, ``finally`` or atexit hook runs, exactly as with an
out-of-memory kill or a pulled plug. ``BEAMWRIGHT_FAILPOINT=<name>@<n>`` dies at the n-th
time the step is reached. Unset (always, outside tests), a failpoint is one dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "BEAMWRIGHT_FAILPOINT"
_hits: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Die here, by SIGKILL, when ``$BEAMWRIGHT_FAILPOINT`` names this step."""
    armed = os.environ.get(ENV)
    if not armed:
        return
    target, _, nth = armed.partition("@")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
