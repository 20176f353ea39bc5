"""The local runner for ``direct_num_workers`` > 1: Beam's FnApiRunner whose in-process SDK
workers send their outputs only in whole elements.

Why not plain ``FnApiRunner`` with ``direct_running_mode=multi_threading``: its embedded gRPC
workers flush every output stream once a second *from a timer thread*
(``data_buffer_time_limit_ms``, default 1000 in Beam's ``worker_handlers``), whatever the
stream holds at that instant. A windowed element is written in pieces (timestamp, window,
pane, then the value, which for an Arrow table is encoded in between, with the GIL released),
so a tick that lands while a big table is being encoded sends its 14-byte header as one data
message and its body as the next. The runner keeps each message as one chunk of the buffer
between stages and, with two workers, deals the chunks out round-robin
(``ListBuffer.partition``): header and body reach different workers, and both fail with
"Error decoding input stream ... <stage>/Read" (seen first at ``DeadLetters/Union/Read``,
where the largest tables cross a stage boundary). The same flush clears the stream *after*
handing its bytes on, so bytes written meanwhile are dropped. Time-based flushing only buys
latency for outputs of a bundle still running, which this stage-by-stage runner never reads
before the bundle ends; size-based flushing (10 MB, between elements) stays.

Beam offers no option for it in this mode (the runner replaces its environment with the
default one), so this runner sets the interval on the pipeline's embedded-gRPC environment
before running it; the interval cannot be 0 (Beam reads 0 as "use the default").

The runner's own side has the same timer: its data server (``worker_handlers.GrpcServer``)
creates every stream to the workers with the module constant ``DATA_BUFFER_TIME_LIMIT_MS``
(1000), and a stream's flush (``get()`` then ``_clear()``, no lock against ``write``) drops
whatever the runner's thread writes between the two: input chunks lost without an error.
The runner writes a stage's input and closes the stream, so it needs no timed flush either;
the constant is set to 0 (size-based streams, no timer thread) before the server is made.
That is a change of a Beam module constant for the process, the third shim beside the two in
``pipelines.runners``, and only this runner (``direct_num_workers`` > 1) makes it.
"""

from __future__ import annotations

import json
from typing import Any

from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

NO_TIMED_FLUSH_MS = 2**31 - 1
"""The longest interval Beam's worker accepts (~25 days): no bundle lives that long, so the
timer thread never fires and a stream is flushed only by size (between elements) or at its end."""


class ElementAlignedFnApiRunner(FnApiRunner):
    """FnApiRunner whose embedded gRPC workers flush outputs by size or at close, never by time."""

    def run_via_runner_api(self, pipeline_proto: Any, options: Any) -> Any:
        from apache_beam.runners.portability.fn_api_runner import worker_handlers

        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0  # the runner's streams: see the docstring
        for env in pipeline_proto.components.environments.values():
            if env.urn == python_urns.EMBEDDED_PYTHON_GRPC:
                config = json.loads(env.payload or b"{}")
                config["data_buffer_time_limit_ms"] = NO_TIMED_FLUSH_MS
                env.payload = json.dumps(config).encode("utf-8")
        return super().run_via_runner_api(pipeline_proto, options)
