"""``beamwright ingest webhook``: an HTTP server that accepts signed webhook deliveries and
appends each accepted body to a Kafka topic.

``POST <path>`` (any path unless ``path`` is set): the raw body is checked
(:func:`connectors.ingest.signature.verify`, then the :class:`ReplayGuard`), appended to Kafka
with the delivery id as key and ``webhook.id``/``webhook.timestamp`` headers, and only then
answered ``202``. Refusals: ``401`` (signature missing or wrong), ``409`` (stale timestamp or a
replayed id), ``411`` (no ``Content-Length``), ``413`` (body over ``max_body`` bytes), ``503`` (Kafka did not confirm: the id is
released, so the sender's retry is accepted). Nothing refused reaches Kafka.

It listens on 127.0.0.1 unless told otherwise. The secret is held as a
:class:`connectors.secrets.Secret` (never in a repr, a log line or an answer); logs name the
delivery id and the outcome only.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from connectors.ingest.appender import AppendFailed, KafkaAppender
from connectors.ingest.signature import TIMESTAMPED, Rejected, ReplayGuard, Scheme, verify
from connectors.secrets import Secret

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
MAX_BODY = 1 << 20


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "beamwright-ingest"
    ingest: WebhookIngest

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Access lines carry nothing secret, but the outcome log below says more."""

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        ingest = self.ingest
        if ingest.path and self.path.split("?", 1)[0] != ingest.path:
            self._answer(404, "no such endpoint")
            return
        try:
            length = int(self.headers.get("Content-Length") or -1)
        except ValueError:
            length = -1
        if length < 0:  # chunked or malformed: the raw body must be known exactly to verify it
            ingest.count("411")
            self.close_connection = True
            self._answer(411, "send the body with a Content-Length")
            return
        if length > ingest.max_body:
            ingest.count("too_large")
            self.close_connection = True
            self._answer(413, f"body over {ingest.max_body} bytes")
            return
        body = self.rfile.read(length)
        status, text = ingest.accept(body, self.headers)
        self._answer(status, text)


class WebhookIngest:
    """The server; ``port=0`` picks a free port (see :attr:`url`).

    Args:
        appender: where accepted bodies go (:class:`KafkaAppender`).
        secret: the shared HMAC secret.
        host, port: where to listen (127.0.0.1 by default).
        path: the one path accepted ('' for any).
        window: seconds a timestamp may differ from now; ids are remembered as long.
        max_body: the largest body accepted, in bytes.
        scheme: what is signed, and in which headers (:mod:`connectors.ingest.signature`).
    """

    def __init__(
        self,
        appender: KafkaAppender,
        secret: Secret,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        path: str = "",
        window: float = 300.0,
        max_body: int = MAX_BODY,
        scheme: Scheme = TIMESTAMPED,
    ) -> None:
        self.appender = appender
        self._secret = secret
        self.path = path
        self.max_body = max_body
        self.scheme = scheme
        self.guard = ReplayGuard(window)
        self.outcomes: Counter[str] = Counter()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"ingest": self})
        self._httpd = _Server((host, port), handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), daemon=True, name="ingest-webhook"
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{self.path}"

    def count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def accept(self, body: bytes, headers: Any) -> tuple[int, str]:
        """The answer to one delivery (status, text); appends it to Kafka when accepted."""
        try:
            delivery_id, timestamp = verify(self._secret.reveal(), body, headers, self.scheme)
            self.guard.reserve(delivery_id, timestamp)
        except Rejected as exc:
            self.count(str(exc.status))
            log.warning("webhook delivery refused (%d): %s", exc.status, exc.problem)
            return exc.status, exc.problem
        try:
            self.appender.append(
                body,
                key=delivery_id,
                headers={"webhook.id": delivery_id, "webhook.timestamp": str(timestamp or "")},
            )
        except (AppendFailed, BufferError, OSError) as exc:
            self.guard.release(delivery_id)
            self.count("503")
            log.error("webhook delivery %s not stored: %s", delivery_id, exc)
            return 503, "not stored; retry later"
        self.count("202")
        log.info("webhook delivery %s appended to %s", delivery_id, self.appender.topic)
        return 202, "accepted"

    def start(self) -> WebhookIngest:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(0.1)

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WebhookIngest:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
