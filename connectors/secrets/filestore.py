"""A local, versioned secret store in a directory: the embedded default.

It behaves like the cloud stores where rotation depends on it (numbered versions, stage
pointers, enable/disable/destroy, per-version expiry and annotations), so the rotation engine,
the CLI and the pipeline work on a laptop exactly as against Secret Manager. Layout::

    <path>/<name>/index.json     versions, states, stages, annotations (no values)
    <path>/<name>/versions/<n>   one value per file, mode 0600

Every change takes an exclusive ``flock``, checks its precondition against the index it read
under that lock (the compare-and-set the rotation engine relies on: ``pending`` must be free to
add, must still name the version to promote, ``current`` must be the one the rotation started
from), bumps the index ``generation`` and replaces ``index.json`` atomically, so two rotation
services and a running pipeline on one machine (or one NFS-locked volume) never see a
half-written index nor overwrite each other. Directories are 0700 and files 0600; values are
not encrypted at rest, so the store's directory must be protected like ``~/.ssh``.
A destroyed version's file is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.secrets import Secret, SecretError
from connectors.secrets.model import (
    CURRENT,
    DESTROYED,
    DISABLED,
    ENABLED,
    LATEST,
    PENDING,
    PREVIOUS,
    STAGES,
    SecretConflict,
    SecretInfo,
    SecretNotFound,
    StageView,
    VersionedSecret,
    VersionInfo,
    check_name,
    expiries,
    expiry_key,
)
from connectors.secrets.registry import config_from_dict
from connectors.secrets.state import private_dir, write_private


@dataclass(frozen=True)
class FileStoreConfig:
    """``path``: the store's directory (created on first write)."""

    path: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileStoreConfig:
        return config_from_dict(cls, data)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class FileStore:
    """Versioned secrets in a local directory."""

    def __init__(self, config: FileStoreConfig) -> None:
        self.root = Path(config.path)

    # ------------------------------------------------------------------ plumbing

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    @contextlib.contextmanager
    def _locked(self, name: str, exclusive: bool) -> Iterator[Path]:
        folder = self._dir(name)
        if exclusive:
            private_dir(folder / "versions")
        elif not folder.is_dir():
            raise SecretNotFound(f"secret {name!r} not found in file store {self.root}")
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield folder

    @staticmethod
    def _load(folder: Path) -> dict[str, Any]:
        try:
            return json.loads((folder / "index.json").read_text())
        except FileNotFoundError:
            return {"next": 1, "generation": 0, "versions": {}, "stages": {}, "annotations": {}}

    @staticmethod
    def _save(folder: Path, index: dict[str, Any]) -> None:
        index["generation"] = index.get("generation", 0) + 1
        write_private(folder / "index.json", json.dumps(index, indent=1, sort_keys=True))

    def _update(self, name: str, change: Callable[[Path, dict[str, Any]], Any]) -> Any:
        with self._locked(name, exclusive=True) as folder:
            index = self._load(folder)
            result = change(folder, index)
            self._save(folder, index)
            return result

    @staticmethod
    def _resolve(name: str, index: dict[str, Any], ref: str) -> str:
        if ref in STAGES:
            version = index["stages"].get(ref)
            if version is None:
                raise SecretNotFound(f"secret {name!r} has no {ref} version")
            return version
        if ref == LATEST:
            enabled = [int(v) for v, meta in index["versions"].items() if meta["state"] == ENABLED]
            if not enabled:
                raise SecretNotFound(f"secret {name!r} has no enabled version")
            return str(max(enabled))
        if ref not in index["versions"]:
            raise SecretNotFound(f"secret {name!r} has no version {ref!r}")
        return ref

    @staticmethod
    def _version(index: dict[str, Any], name: str, version: str) -> dict[str, Any]:
        try:
            return index["versions"][version]
        except KeyError:
            raise SecretNotFound(f"secret {name!r} has no version {version!r}") from None

    # ------------------------------------------------------------------ reading

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        with self._locked(name, exclusive=False) as folder:
            index = self._load(folder)
            version = self._resolve(name, index, ref)
            state = index["versions"][version]["state"]
            if state != ENABLED:
                raise SecretError(f"version {version} of secret {name!r} is {state}")
            data = (folder / "versions" / version).read_bytes()
            expires = expiries(index["annotations"]).get(version)
        return VersionedSecret(name, version, Secret(data), expires)

    def stages(self, name: str) -> StageView:
        with self._locked(name, exclusive=False) as folder:
            stages = self._load(folder)["stages"]
        if CURRENT not in stages:
            raise SecretNotFound(f"secret {name!r} has no current version")
        return StageView(name, stages[CURRENT], stages.get(PREVIOUS), time.time())

    def describe(self, name: str) -> SecretInfo:
        with self._locked(name, exclusive=False) as folder:
            index = self._load(folder)
        expiry = expiries(index["annotations"])
        by_version: dict[str, set[str]] = {}
        for stage, version in index["stages"].items():
            by_version.setdefault(version, set()).add(stage)
        versions = tuple(
            VersionInfo(
                version=v,
                state=meta["state"],
                created=datetime.fromisoformat(meta["created"]),
                expire_time=expiry.get(v),
                stages=frozenset(by_version.get(v, ())),
            )
            for v, meta in sorted(index["versions"].items(), key=lambda kv: int(kv[0]))
        )
        return SecretInfo(name, versions, dict(index["stages"]), dict(index["annotations"]))

    # ------------------------------------------------------------------ writing

    def ensure(self, name: str) -> None:
        self._update(name, lambda folder, index: None)

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Nothing to set: the file store has no rotation schedule of its own."""

    def add_version(
        self, name: str, secret: Secret, *, token: str | None = None, expire_time: datetime | None = None
    ) -> str:
        def add(folder: Path, index: dict[str, Any]) -> str:
            if PENDING in index["stages"]:
                raise SecretConflict(f"secret {name!r}: version {index['stages'][PENDING]} is already pending")
            version = str(index["next"])
            index["next"] += 1
            fd = os.open(folder / "versions" / version, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secret.reveal())
            index["versions"][version] = {"state": ENABLED, "created": _now(), "token": token}
            index["stages"][PENDING] = version
            if expire_time is not None:
                index["annotations"][expiry_key(version)] = expire_time.isoformat()
            return version

        return self._update(name, add)

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        def promote(folder: Path, index: dict[str, Any]) -> str | None:
            stages = index["stages"]
            if stages.get(PENDING) != version or stages.get(CURRENT) != expect_current:
                raise SecretConflict(
                    f"secret {name!r}: cannot promote version {version}: pending is "
                    f"{stages.get(PENDING)}, current is {stages.get(CURRENT)} (expected {expect_current})"
                )
            if self._version(index, name, version)["state"] != ENABLED:
                raise SecretConflict(f"secret {name!r}: version {version} is not enabled")
            del stages[PENDING]
            stages[CURRENT] = version
            if expect_current is not None:
                stages[PREVIOUS] = expect_current
            return expect_current

        return self._update(name, promote)

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        def clear(folder: Path, index: dict[str, Any]) -> bool:
            if index["stages"].get(stage) != version:
                return False
            del index["stages"][stage]
            return True

        return self._update(name, clear)

    def _set_state(self, name: str, version: str, state: str) -> None:
        def change(folder: Path, index: dict[str, Any]) -> None:
            meta = self._version(index, name, version)
            if meta["state"] == DESTROYED:
                raise SecretError(f"version {version} of secret {name!r} is destroyed")
            if state != ENABLED and index["stages"].get(CURRENT) == version:
                raise SecretConflict(f"version {version} of secret {name!r} is current")
            meta["state"] = state
            if state == DESTROYED:
                (folder / "versions" / version).unlink(missing_ok=True)
                index["annotations"].pop(expiry_key(version), None)

        self._update(name, change)

    def disable(self, name: str, version: str) -> None:
        self._set_state(name, version, DISABLED)

    def enable(self, name: str, version: str) -> None:
        self._set_state(name, version, ENABLED)

    def destroy(self, name: str, version: str) -> None:
        self._set_state(name, version, DESTROYED)

    def close(self) -> None:
        """Nothing to release: every call opens and closes its files."""
