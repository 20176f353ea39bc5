"""The rotation service's own state for one secret, and the lock that serialises changes.

What the store cannot say lives here: when each demoted version must be disabled, when the
schedule fires next, when the last rotation failed. Every change happens under an exclusive
``flock`` on the secret's lock file, so the long-running service and a CLI ``rotate`` in
another process never rotate the same secret at once; the state is re-read inside the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class RuntimeState:
    retiring: dict[str, float] = field(default_factory=dict)
    """version -> time (epoch seconds) at which it is disabled."""
    next_run: float | None = None
    last_rotation: float | None = None
    last_failure: float | None = None

    @classmethod
    def load(cls, path: Path) -> RuntimeState:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return cls()

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(self), sort_keys=True))
        os.replace(tmp, path)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
