"""Secret values and where they come from.

A :class:`Secret` never shows its value in ``repr``/``str``, logs or pickles of pipeline graphs:
transforms hold a *reference* (:class:`EnvSecret`, :class:`FileSecret`) and resolve it on the
worker in ``DoFn.setup``, so the value is never part of the pipeline definition, its options or
anything written to disk.

The credential service builds on these (imported on use, so this module stays light):
providers and their registry (``registry``, ``gcp``, ``aws``, ``vault``, ``env``, ``filestore``,
``chain``), :class:`~connectors.secrets.refs.StoredSecret` (a reference resolved through a
provider), and rotation (``policy``, ``engine``, ``service``, ``audit``, ``notify``,
``issuers``, ``verifiers``, ``reporting``). The pipeline side is :mod:`transforms.credentials`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from connectors.errors import BeamwrightError

_LEFT_TO_WORKERS: ContextVar[bool] = ContextVar("beamwright_secrets_left", default=False)


@contextmanager
def left_to_workers() -> Iterator[None]:
    """Build a graph without resolving any secret reference (``plan``): references go into
    the graph and the workers resolve them in ``setup``, so the planning machine needs
    neither the secrets nor their store, and no value can reach the plan's output. Code that
    resolves early only to fail before a run (the builders, the mask step) asks
    :func:`resolved_early` first."""
    token = _LEFT_TO_WORKERS.set(True)
    try:
        yield
    finally:
        _LEFT_TO_WORKERS.reset(token)


def resolved_early() -> bool:
    """Whether references may be resolved while a graph is built (not inside
    :func:`left_to_workers`)."""
    return not _LEFT_TO_WORKERS.get()


class SecretError(BeamwrightError, RuntimeError):
    """A secret could not be resolved. The message names the reference, never a value."""


class Secret:
    """A secret value that refuses to be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        if not value:
            raise SecretError("a secret must not be empty")
        self._value = value

    def reveal(self) -> bytes:
        """The raw value, for the one call that needs it (a key, a token). Never log it."""
        return self._value

    @property
    def fingerprint(self) -> str:
        """A short, non-reversible id for audit logs: first 12 hex chars of SHA-256."""
        return hashlib.sha256(self._value).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Secret(fingerprint={self.fingerprint})"

    __str__ = __repr__

    def __reduce__(self) -> tuple:
        raise TypeError("a Secret must not be pickled; pass a secret reference instead")


class SecretRef(Protocol):
    """Where a secret lives; resolving it yields a :class:`Secret`."""

    def resolve(self) -> Secret: ...


@dataclass(frozen=True)
class EnvSecret:
    """A secret in an environment variable (of the worker that resolves it)."""

    name: str

    def resolve(self) -> Secret:
        value = os.environ.get(self.name)
        if not value:
            raise SecretError(f"environment variable {self.name} is not set or empty")
        return Secret(value.encode("utf-8"))


@dataclass(frozen=True)
class FileSecret:
    """A secret in a file (trailing newline stripped), e.g. a mounted Kubernetes secret."""

    path: str

    def create_if_missing(self, nbytes: int = 32) -> bool:
        """Write a random key (hex, mode 0600) if the file does not exist; True if created.

        For local, zero-setup defaults only; production keys belong in a secret store.
        """
        path = Path(self.path)
        if path.exists():
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(nbytes) + "\n")
        return True

    def resolve(self) -> Secret:
        try:
            data = Path(self.path).read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise SecretError(f"cannot read secret file {self.path}: {exc.strerror}") from None
        return Secret(data)
