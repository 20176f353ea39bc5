"""Where rotation notifications go: an SMTP sink and a webhook receiver checking signatures."""

from __future__ import annotations

import json
import time
from typing import Any

from connectors.secrets.notify import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    verify_signature,
)
from pipelines.dev.kafka_broker import free_port
from tests.servers.http import LOOPBACK, JsonHandler, LoopbackServer


class SmtpSink:
    """An SMTP server (aiosmtpd) keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                sink.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "content": envelope.content.decode("utf-8", "replace"),
                    }
                )
                return "250 OK"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname=LOOPBACK, port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()


class _WebhookHandler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        owner = self.owner
        owner.arrivals += 1
        if owner.delay:
            time.sleep(owner.delay)  # a slow receiver: the sender may be killed meanwhile
        valid = verify_signature(
            owner.key,
            self.headers.get(TIMESTAMP_HEADER, ""),
            self.headers.get(NONCE_HEADER, ""),
            body,
            self.headers.get(SIGNATURE_HEADER, ""),
            guard=owner.guard,
        )
        owner.received.append({"valid": valid, "body": body, "headers": dict(self.headers)})
        self._reply(204 if valid else 401)


class WebhookReceiver:
    """Accepts webhook calls whose HMAC signature checks out with ``key`` and whose nonce was
    not used before (replays are rejected); keeps them all. ``delay`` makes it answer slowly."""

    def __init__(self, key: bytes, *, delay: float = 0.0) -> None:
        self.key = key
        self.delay = delay
        self.guard = ReplayGuard()
        self.arrivals = 0  # requests that reached the handler, answered or not
        self.received: list[dict[str, Any]] = []
        self._server = LoopbackServer(_WebhookHandler, self)

    @property
    def url(self) -> str:
        return self._server.url + "/hooks/secrets"

    def events(self) -> list[dict[str, Any]]:
        """The verified notifications, decoded."""
        return [json.loads(r["body"]) for r in self.received if r["valid"]]

    def close(self) -> None:
        self._server.close()


class _IncomingHandler(JsonHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        self.owner.received.append(
            {"path": self.path, "headers": dict(self.headers), "json": json.loads(body)}
        )
        self._reply(200, {"ok": True})


class IncomingWebhook:
    """A Slack- or Teams-style incoming webhook: takes unsigned JSON posts (the secret is the
    URL's path, as with the real services) and keeps each decoded body."""

    def __init__(self, path: str = "/services/T000/B000/XXXX") -> None:
        self.path = path
        self.received: list[dict[str, Any]] = []
        handler = type("IncomingHandler", (_IncomingHandler,), {})  # LoopbackServer sets
        self._server = LoopbackServer(handler, self)  # the owner on the class: one each

    @property
    def url(self) -> str:
        return self._server.url + self.path

    def close(self) -> None:
        self._server.close()
