"""Sending OpenLineage events without ever slowing or breaking the pipeline.

Transport selection follows openlineage-python's own rules (``OPENLINEAGE__TRANSPORT__*``
variables, ``OPENLINEAGE_CONFIG`` / ``openlineage.yml``, ``OPENLINEAGE_URL``,
``OPENLINEAGE_DISABLED``), below a transport named in the spec; only when none is configured do
we write a local JSONL event log instead of the client's console fallback.

Events go through :class:`BackgroundSender`: a bounded queue drained by one thread that retries
with exponential backoff. ``emit`` never blocks the caller (a full queue drops the oldest event
and counts it), and ``close`` waits at most a bounded time, so a backend that is down, slow or
failing costs the run at most that wait at shutdown.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

EVENT_OBSERVERS: list[Callable[[dict[str, Any]], None]] = []
"""Callables given every event (as a JSON-ready dict) this process emits: for tests, audits
and debugging. They run on the sender thread and must not raise."""


def configured_by_environment() -> bool:
    """True when openlineage-python's standard configuration selects a transport."""
    if any(k.startswith("OPENLINEAGE__TRANSPORT") for k in os.environ):
        return True
    if os.environ.get("OPENLINEAGE_URL") or os.environ.get("OPENLINEAGE_DISABLED"):
        return True
    if os.environ.get("OPENLINEAGE_CONFIG"):
        return True
    home = Path("~/.openlineage/openlineage.yml").expanduser()
    return Path("openlineage.yml").is_file() or home.is_file()


def make_client(transport: Mapping[str, Any] | None, event_log: str | None):  # noqa: ANN201
    """An OpenLineageClient: the spec's transport, else the standard configuration, else a
    JSONL file at ``event_log``."""
    from openlineage.client import OpenLineageClient

    if transport:
        return OpenLineageClient(config={"transport": dict(transport)})
    if configured_by_environment() or event_log is None:
        return OpenLineageClient()
    Path(event_log).parent.mkdir(parents=True, exist_ok=True)
    return OpenLineageClient(
        config={"transport": {"type": "file", "log_file_path": event_log, "append": True}}
    )


@dataclass
class SenderStats:
    sent: int = 0
    failed: int = 0  # gave up after retries
    dropped: int = 0  # queue overflow or left unsent at shutdown
    retries: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(sent=self.sent, failed=self.failed, dropped=self.dropped, retries=self.retries)


_STOP = object()


class BackgroundSender:
    """Emit events on a background thread with a bounded buffer, retries and a bounded close.

    Args:
        emit: sends one event (e.g. ``OpenLineageClient.emit``); may raise.
        max_buffer: events held at most; beyond it the oldest is dropped (and counted).
        retries: attempts after the first failure, with exponential backoff from ``backoff``.
        close_timeout: the longest ``close`` waits for the buffer to drain.
    """

    def __init__(
        self,
        emit: Callable[[Any], Any],
        *,
        max_buffer: int = 1000,
        retries: int = 3,
        backoff: float = 0.2,
        close_timeout: float = 10.0,
    ) -> None:
        self._emit = emit
        self._retries = retries
        self._backoff = backoff
        self._close_timeout = close_timeout
        self._buffer: collections.deque = collections.deque()
        self._max_buffer = max_buffer
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = float("inf")
        self.stats = SenderStats()
        self._thread = threading.Thread(target=self._run, daemon=True, name="openlineage-sender")
        self._thread.start()

    def submit(self, event: Any) -> None:
        """Queue ``event``; never blocks."""
        with self._cond:
            if len(self._buffer) >= self._max_buffer:
                self._buffer.popleft()
                self.stats.dropped += 1
                log.warning("OpenLineage buffer full; dropped the oldest event")
            self._buffer.append(event)
            self._cond.notify()

    def _next(self) -> Any:
        with self._cond:
            while not self._buffer and not self._closing:
                self._cond.wait()
            return self._buffer.popleft() if self._buffer else _STOP

    def _run(self) -> None:
        while (event := self._next()) is not _STOP:
            self._send(event)

    def _send(self, event: Any) -> None:
        for attempt in range(self._retries + 1):
            try:
                self._emit(event)
                self.stats.sent += 1
                return
            except Exception as exc:  # the backend's problem must never become the run's
                if attempt == self._retries or time.monotonic() >= self._deadline:
                    self.stats.failed += 1
                    log.warning(
                        "OpenLineage event not delivered after %d attempt(s): %s", attempt + 1, exc
                    )
                    return
                self.stats.retries += 1
                time.sleep(
                    min(self._backoff * 2**attempt, max(0.0, self._deadline - time.monotonic()))
                )

    def close(self) -> SenderStats:
        """Drain for at most ``close_timeout`` seconds; count what is left as dropped."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + self._close_timeout
            self._cond.notify_all()
        self._thread.join(self._close_timeout)
        with self._cond:
            left = len(self._buffer) + (1 if self._thread.is_alive() else 0)
            self._buffer.clear()
        if left:
            self.stats.dropped += left
            log.warning(
                "OpenLineage backend did not accept %d event(s) within %.1f s; continuing without them",
                left,
                self._close_timeout,
            )
        return self.stats


class RunLineage:
    """Emits the lifecycle events of one run through a :class:`BackgroundSender`."""

    def __init__(
        self,
        *,
        namespace: str,
        job_name: str,
        run_id: str,
        event_log: str | None,
        transport: Mapping[str, Any] | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        from openlineage.client.serde import Serde

        self.namespace = namespace
        self.job_name = job_name
        self.run_id = run_id
        self.event_log = None if (transport or configured_by_environment()) else event_log
        self._client = make_client(transport, event_log)
        self._serde = Serde
        self._sender = BackgroundSender(self._deliver, close_timeout=close_timeout)

    def _deliver(self, event: Any) -> None:
        if EVENT_OBSERVERS:
            import json

            data = json.loads(self._serde.to_json(event))
            for observer in EVENT_OBSERVERS:
                observer(data)
        self._client.emit(event)

    def emit(
        self,
        state: str,
        *,
        inputs: list[Any],
        outputs: list[Any],
        run_facets: Mapping[str, Any] | None = None,
        job_facets: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a RunEvent of type ``state`` (START, RUNNING, COMPLETE, FAIL, ABORT)."""
        import datetime as dt

        from openlineage.client.event_v2 import Job, Run, RunEvent, RunState

        from lineage.facets import PRODUCER

        event = RunEvent(
            eventType=getattr(RunState, state),
            eventTime=dt.datetime.now(dt.timezone.utc).isoformat(),
            run=Run(runId=self.run_id, facets=dict(run_facets or {})),
            job=Job(namespace=self.namespace, name=self.job_name, facets=dict(job_facets or {})),
            producer=PRODUCER,
            inputs=inputs,
            outputs=outputs,
        )
        self._sender.submit(event)

    def close(self) -> SenderStats:
        stats = self._sender.close()
        try:
            self._client.close(timeout=1.0)
        except Exception as exc:  # pragma: no cover - depends on the transport
            log.warning("closing the OpenLineage client failed: %s", exc)
        return stats
