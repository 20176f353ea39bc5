"""The rotation audit log: JSONL, append-only, one line per action.

Each line says when, who (``actor``), what (``action``, ``outcome``), to which secret and
version, and the value's fingerprint (12 hex chars of its SHA-256): enough to match a line to
a version and to a consumer's report, never enough to recover the value. Lines are appended
with a single ``write`` on an ``O_APPEND`` descriptor (mode 0600), so concurrent writers (the
rotation service, a CLI ``rotate``) never interleave within a line.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.secrets import Secret
from connectors.secrets.state import append_private

REDACTED = "[redacted]"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_QUERY_VALUE = re.compile(r"([?&;][^=&#\s]+=)[^&#\s\"']+")


def redact_urls(text: str) -> str:
    """``text`` with URL credentials removed: userinfo (``https://user:pw@host``) and every
    query parameter value (``?token=...``), since a URL's query is where APIs put keys."""
    return _QUERY_VALUE.sub(rf"\1{REDACTED}", _USERINFO.sub(rf"\1{REDACTED}@", text))


def scrub(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    """The one redaction path for text bound for the audit log, notifications, stdout and
    exceptions: every known value (raw or base64) and every URL credential replaced. Error
    messages from other systems (an HTTP body, an exception) may echo a credential back."""
    text = redact_urls(text)
    for secret in secrets:
        if secret is None:
            continue
        raw = secret.reveal()
        for form in (raw, base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            token = form.decode("utf-8", "ignore")
            if token:
                text = text.replace(token, REDACTED)
    return text


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class AuditLog:
    """Append and read audit lines in ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def record(
        self,
        *,
        action: str,
        secret: str,
        outcome: str,
        actor: str,
        version: str | None = None,
        fingerprint: str | None = None,
        trigger: str | None = None,
        rotation_id: str | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        """Append one line (the detail through :func:`redact_urls`); returns it."""
        entry = {
            "time": utc_now(),
            "actor": actor,
            "action": action,
            "secret": secret,
            "version": version,
            "outcome": outcome,
            "fingerprint": fingerprint,
            "trigger": trigger,
            "rotation_id": rotation_id,
            "detail": None if detail is None else redact_urls(detail),
        }
        append_private(self.path, (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8"))
        return entry

    def read(
        self, secret: str | None = None, *, since: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Lines for ``secret`` (all if None) at or after ``since`` (ISO time), oldest first;
        the newest ``limit`` if given."""
        if not self.path.exists():
            return []
        since_time = datetime.fromisoformat(since) if since else None
        if since_time is not None and since_time.tzinfo is None:
            since_time = since_time.replace(tzinfo=timezone.utc)
        lines = []
        with open(self.path, encoding="utf-8") as f:
            for raw in f:
                entry = json.loads(raw)
                if secret is not None and entry["secret"] != secret:
                    continue
                if since_time is not None and datetime.fromisoformat(entry["time"]) < since_time:
                    continue
                lines.append(entry)
        return lines[-limit:] if limit else lines
