"""How consumers tell the rotation service that a credential was rejected (reactive policy).

A pipeline worker cannot call the service's Python objects, so reports go through an inbox: a
JSONL file (mode 0600) each report is appended to with one ``write`` (atomic for a line this
size), which the service drains on every tick. It works for every process on the machine, or on
a shared volume; the report carries the version and fingerprint, never the value.

A report is a request to rotate, so it is authenticated: each one carries an HMAC-SHA256 over
its fields with the *report key*, a random key in the service home (``report.key``, 0600) that
only workers are given (as a secret reference). The service drops unsigned or forged reports,
reports whose fingerprint is not the reported version's, and rotates reactively at most once
per ``min_interval``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

from connectors.secrets import SecretRef
from connectors.secrets.state import append_private


@dataclass(frozen=True)
class AuthFailure:
    """A consumer's report that ``version`` of ``secret`` was rejected by the protected system."""

    secret: str
    version: str
    fingerprint: str
    actor: str
    time: float
    detail: str = ""
    signature: str = ""

    def signed(self, key: bytes) -> AuthFailure:
        """This report with its signature over every other field."""
        return replace(self, signature=_mac(key, self))

    def authentic(self, key: bytes) -> bool:
        """True if the signature was made with ``key`` over exactly these fields."""
        return bool(self.signature) and hmac.compare_digest(self.signature, _mac(key, self))


def _mac(key: bytes, failure: AuthFailure) -> str:
    fields = asdict(failure)
    del fields["signature"]
    return hmac.new(key, json.dumps(fields, sort_keys=True).encode("utf-8"), hashlib.sha256).hexdigest()


class FailureReporter(Protocol):
    def report(self, failure: AuthFailure) -> None: ...


@dataclass(frozen=True)
class InboxReporter:
    """Append signed reports to the inbox file at ``path`` (picklable: it travels to workers
    with the key's reference, never the key)."""

    path: str
    key: SecretRef

    def report(self, failure: AuthFailure) -> None:
        signed = failure.signed(self.key.resolve().reveal())
        append_private(Path(self.path), (json.dumps(asdict(signed), sort_keys=True) + "\n").encode("utf-8"))


def read_inbox(path: str | Path, offset: int) -> tuple[list[AuthFailure], int]:
    """Complete reports after byte ``offset``, and the offset to continue from. Lines that are
    not reports at all are skipped (the caller audits signatures)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    reports = []
    for line in complete.splitlines():
        try:
            reports.append(AuthFailure(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return reports, offset + len(complete)
