"""The rotation service's own state for one secret, the lock that serialises changes, and the
private-file helpers every service file goes through.

What the store cannot say lives here: the rotation in flight (its token, the step it reached,
the version it created), when each demoted version must be disabled, notifications not yet
delivered (the outbox), when the schedule fires next, when the last rotation failed. The state
is saved *before* each step's side effect, so a process killed at any point leaves a record the
next ``run``/``rotate``/``start`` resumes from; notifications are delivered from the outbox only
after the state that caused them is durable.

Every change happens under an exclusive ``flock`` on the secret's lock file, so the
long-running service and a CLI ``rotate`` sharing a home never rotate the same secret at once.
Two *homes* on one store are kept apart by the store's own compare-and-set, not by this lock.
Files are created 0600 and directories 0700: the state names versions and fingerprints, and a
policy may name endpoints, none of which other local users need to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def default_home() -> Path:
    """``$XDG_STATE_HOME/beamwright`` (``~/.local/state/beamwright`` without it): the rotation
    service's home is per user and never depends on the directory a command runs in, so two
    shells cannot silently run two services with two locks and two audit logs."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "beamwright"


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700 (existing ones are left as they are)."""
    missing = []
    probe = Path(path)
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent creator got there first
            folder.mkdir(mode=0o700)
    return Path(path)


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600, flushed to disk before the rename
    (a kill -9 right after returns must find the new content)."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def append_private(path: Path, line: bytes) -> None:
    """Append one line with a single ``write`` on an ``O_APPEND`` descriptor (mode 0600), so
    concurrent writers never interleave within a line."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@dataclass
class RuntimeState:
    rotation: dict[str, Any] | None = None
    """The rotation in flight: ``token``, ``step`` (``create``, ``created``, ``verified``),
    ``trigger``, ``reason``, ``actor``, ``expect_current``, ``fingerprint``, ``version``."""
    retiring: dict[str, float] = field(default_factory=dict)
    """version -> time (epoch seconds) at which it is revoked and disabled."""
    outbox: list[dict[str, Any]] = field(default_factory=list)
    """Notifications not yet delivered to every notifier (retried on every tick)."""
    alerted: list[str] = field(default_factory=list)
    """Versions whose failed retirement was already notified (one alert, many retries)."""
    next_run: float | None = None
    last_rotation: float | None = None
    last_failure: float | None = None
    last_reactive: float | None = None

    @classmethod
    def load(cls, path: Path) -> RuntimeState:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        write_private(path, json.dumps(asdict(self), sort_keys=True))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600 if missing) for the ``with`` block."""
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
