"""How consumers tell the rotation service that a credential was rejected (reactive policy).

A pipeline worker cannot call the service's Python objects, so reports go through an inbox: a
JSONL file each report is appended to with one ``write`` (atomic for a line this size), which
the service drains on every tick. It works for every process on the machine, or on a shared
volume; the report carries the version and fingerprint, never the value.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class AuthFailure:
    """A consumer's report that ``version`` of ``secret`` was rejected by the protected system."""

    secret: str
    version: str
    fingerprint: str
    actor: str
    time: float
    detail: str = ""


class FailureReporter(Protocol):
    def report(self, failure: AuthFailure) -> None: ...


@dataclass(frozen=True)
class InboxReporter:
    """Append reports to the inbox file at ``path`` (picklable: it travels to workers)."""

    path: str

    def report(self, failure: AuthFailure) -> None:
        line = (json.dumps(asdict(failure), sort_keys=True) + "\n").encode("utf-8")
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def read_inbox(path: str | Path, offset: int) -> tuple[list[AuthFailure], int]:
    """Complete reports after byte ``offset``, and the offset to continue from."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    complete = data[: data.rfind(b"\n") + 1]
    reports = [AuthFailure(**json.loads(line)) for line in complete.splitlines() if line.strip()]
    return reports, offset + len(complete)
