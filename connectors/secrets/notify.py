"""Tell people when a credential rotated, failed to, or was rolled back: webhooks and e-mail.

A notification carries names, versions, fingerprints and the reason (already through the
one redaction path), never a value. Webhook bodies are signed with HMAC-SHA256 over
``"<timestamp>.<nonce>.<body>"`` (header ``X-Beamwright-Signature: sha256=<hex>``, timestamp
in ``X-Beamwright-Timestamp``, a fresh random nonce per delivery in ``X-Beamwright-Nonce``).
:func:`verify_signature` is the receiver's side: it rejects forgeries, signatures older than
the tolerance, and, given a :class:`ReplayGuard`, any nonce it has already accepted, so a
captured request cannot be replayed even within the tolerance. Notifications are delivered
at least once (from the rotation service's outbox); ``rotation_id`` + ``event`` identify
duplicates. Signing keys and SMTP passwords are secret references, resolved at send time;
URLs are shown with their credentials redacted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import smtplib
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any, Protocol

from connectors.secrets import SecretError, SecretRef
from connectors.secrets.refs import Url, resolve_url, secret_ref, show_url, url_setting

ROTATED, ROLLED_BACK, FAILED = "rotated", "rolled_back", "failed"
EVENTS = (ROTATED, ROLLED_BACK, FAILED)
SIGNATURE_HEADER = "X-Beamwright-Signature"
TIMESTAMP_HEADER = "X-Beamwright-Timestamp"
NONCE_HEADER = "X-Beamwright-Nonce"


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


def sign(key: bytes, timestamp: str, nonce: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` with ``nonce``."""
    message = timestamp.encode("ascii") + b"." + nonce.encode("ascii") + b"." + body
    return "sha256=" + hmac.new(key, message, hashlib.sha256).hexdigest()


class ReplayGuard:
    """The nonces a receiver accepted within the tolerance window: a second use is a replay.
    Thread-safe (receivers are usually threaded HTTP servers); entries expire with the window."""

    def __init__(self, tolerance: float = 300.0) -> None:
        self.tolerance = tolerance
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_use(self, nonce: str) -> bool:
        """True the first time ``nonce`` is seen within the window, False after."""
        now = time.time()
        with self._lock:
            for old in [n for n, t in self._seen.items() if now - t > 2 * self.tolerance]:
                del self._seen[old]
            if not nonce or nonce in self._seen:
                return False
            self._seen[nonce] = now
            return True


def verify_signature(
    key: bytes,
    timestamp: str,
    nonce: str,
    body: bytes,
    signature: str,
    *,
    guard: ReplayGuard | None = None,
    tolerance: float = 300.0,
) -> bool:
    """True if ``signature`` is ours for ``body``, ``timestamp`` is within ``tolerance`` seconds
    of now and (given a ``guard``) ``nonce`` was not accepted before."""
    try:
        fresh = abs(time.time() - float(timestamp)) <= tolerance
    except ValueError:
        return False
    if not fresh or not hmac.compare_digest(sign(key, timestamp, nonce, body), signature):
        return False
    return guard is None or guard.first_use(nonce)


@dataclass(frozen=True)
class WebhookNotifier:
    """POST the notification as JSON to ``url`` (a URL, or a reference to one when it carries
    a credential), signed with the key ``key`` refers to."""

    url: Url
    key: SecretRef
    events: Sequence[str] = EVENTS
    timeout: float = 10.0

    def send(self, note: Notification) -> None:
        body = json.dumps(note.to_json(), sort_keys=True).encode("utf-8")
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        request = urllib.request.Request(
            resolve_url(self.url),
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: timestamp,
                NONCE_HEADER: nonce,
                SIGNATURE_HEADER: sign(self.key.resolve().reveal(), timestamp, nonce, body),
            },
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            if not 200 <= response.status < 300:
                raise OSError(f"webhook answered HTTP {response.status}")

    def __str__(self) -> str:
        return f"webhook {show_url(self.url)}"


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
                url=url_setting(config["url"]),
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
