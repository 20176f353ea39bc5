"""Tell people when a credential rotated, failed to, or was rolled back: webhooks and e-mail.

A notification carries names, versions, fingerprints and the reason, never a value. Webhook
bodies are signed with HMAC-SHA256 over ``"<timestamp>.<body>"`` (header
``X-Beamwright-Signature: sha256=<hex>``, timestamp in ``X-Beamwright-Timestamp``) so a
receiver can reject forged and replayed calls; :func:`verify_signature` is the receiver's side.
Signing keys and SMTP passwords are secret references, resolved at send time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from connectors.secrets import SecretError, SecretRef
from connectors.secrets.refs import secret_ref

ROTATED, ROLLED_BACK, FAILED = "rotated", "rolled_back", "failed"
EVENTS = (ROTATED, ROLLED_BACK, FAILED)
SIGNATURE_HEADER = "X-Beamwright-Signature"
TIMESTAMP_HEADER = "X-Beamwright-Timestamp"


@dataclass(frozen=True)
class Notification:
    """What happened to one secret in one rotation."""

    event: str
    secret: str
    trigger: str
    rotation_id: str
    reason: str
    time: str
    version: str | None = None
    previous: str | None = None
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def subject(self) -> str:
        words = {ROTATED: "rotated", ROLLED_BACK: "rotation rolled back", FAILED: "rotation failed"}
        return f"[beamwright] secret {self.secret}: {words.get(self.event, self.event)}"


class Notifier(Protocol):
    """Delivers notifications; raises on failure (the caller audits it and carries on)."""

    events: Sequence[str]

    def send(self, note: Notification) -> None: ...


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    key: bytes, timestamp: str, body: bytes, signature: str, *, tolerance: float = 300.0
) -> bool:
    """True if ``signature`` is ours for ``body`` and ``timestamp`` is within ``tolerance``
    seconds of now (older signatures are replays)."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(key, timestamp, body), signature)


@dataclass(frozen=True)
class WebhookNotifier:
    """POST the notification as JSON to ``url``, signed with the key ``key`` refers to."""

    url: str
    key: SecretRef
    events: Sequence[str] = EVENTS
    timeout: float = 10.0

    def send(self, note: Notification) -> None:
        body = json.dumps(note.to_json(), sort_keys=True).encode("utf-8")
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                SIGNATURE_HEADER: sign(self.key.resolve().reveal(), timestamp, body),
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered HTTP {response.status}")

    def __str__(self) -> str:
        return f"webhook {self.url}"


@dataclass(frozen=True)
class SmtpNotifier:
    """Send the notification as a plain-text e-mail."""

    host: str
    port: int
    sender: str
    to: Sequence[str]
    starttls: bool = False
    username: str | None = None
    password: SecretRef | None = None
    events: Sequence[str] = EVENTS
    timeout: float = 10.0

    def send(self, note: Notification) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Subject"] = note.subject()
        lines = [f"{key}: {value}" for key, value in note.to_json().items() if value is not None]
        message.set_content("\n".join(lines) + "\n")
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username and self.password is not None:
                smtp.login(self.username, self.password.resolve().reveal().decode("utf-8"))
            smtp.send_message(message)

    def __str__(self) -> str:
        return f"smtp {self.host}:{self.port}"


def _events(config: Mapping[str, Any]) -> tuple[str, ...]:
    events = tuple(config.get("events", EVENTS))
    unknown = sorted(set(events) - set(EVENTS))
    if unknown:
        raise SecretError(f"unknown notification event(s) {unknown}; known: {list(EVENTS)}")
    return events


def build_notifier(config: Mapping[str, Any]) -> Notifier:
    """A notifier from ``{"type": "webhook", "url", "key": <ref>}`` or ``{"type": "smtp",
    "host", "port", "sender", "to": [...], "starttls", "username", "password": <ref>}``."""
    kind = config.get("type")
    try:
        if kind == "webhook":
            return WebhookNotifier(
                url=config["url"],
                key=secret_ref(config["key"]),
                events=_events(config),
                timeout=float(config.get("timeout", 10.0)),
            )
        if kind == "smtp":
            password = config.get("password")
            return SmtpNotifier(
                host=config["host"],
                port=int(config.get("port", 25)),
                sender=config["sender"],
                to=list(config["to"]),
                starttls=bool(config.get("starttls", False)),
                username=config.get("username"),
                password=secret_ref(password) if password else None,
                events=_events(config),
                timeout=float(config.get("timeout", 10.0)),
            )
    except KeyError as exc:
        raise SecretError(f"{kind} notifier needs {exc.args[0]!r}") from None
    raise SecretError(f"unknown notifier type {kind!r}; use 'webhook' or 'smtp'")
