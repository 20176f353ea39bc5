"""A local, versioned secret store in a directory: the embedded default.

It behaves like the cloud stores where rotation depends on it (numbered versions, stage
pointers, enable/disable/destroy, per-version expiry and annotations), so the rotation engine,
the CLI and the pipeline work on a laptop exactly as against Secret Manager. Layout::

    <path>/<name>/index.json     versions, states, stages, annotations (no values)
    <path>/<name>/versions/<n>   one value per file, mode 0600

Every change takes an exclusive ``flock`` and replaces ``index.json`` atomically, so a CLI
rotation and a running pipeline on the same machine never see a half-written index.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
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
            (folder / "versions").mkdir(parents=True, exist_ok=True, mode=0o700)
        elif not folder.is_dir():
            raise SecretNotFound(f"secret {name!r} not found in file store {self.root}")
        with open(folder / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield folder

    @staticmethod
    def _load(folder: Path) -> dict[str, Any]:
        try:
            return json.loads((folder / "index.json").read_text())
        except FileNotFoundError:
            return {"next": 1, "versions": {}, "stages": {}, "annotations": {}}

    @staticmethod
    def _save(folder: Path, index: dict[str, Any]) -> None:
        tmp = folder / f".index.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, folder / "index.json")

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
        return VersionedSecret(name, version, Secret(data))

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

    def add_version(
        self, name: str, secret: Secret, *, stage: str = PENDING, expire_time: datetime | None = None
    ) -> str:
        def add(folder: Path, index: dict[str, Any]) -> str:
            version = str(index["next"])
            index["next"] += 1
            fd = os.open(folder / "versions" / version, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(secret.reveal())
            index["versions"][version] = {"state": ENABLED, "created": _now()}
            index["stages"][stage] = version
            if expire_time is not None:
                index["annotations"][expiry_key(version)] = expire_time.isoformat()
            return version

        return self._update(name, add)

    def promote(self, name: str, version: str) -> str | None:
        def promote(folder: Path, index: dict[str, Any]) -> str | None:
            self._version(index, name, version)
            stages = index["stages"]
            old = stages.get(CURRENT)
            stages[CURRENT] = version
            if old is not None and old != version:
                stages[PREVIOUS] = old
            if stages.get(PENDING) == version:
                del stages[PENDING]
            return old if old != version else None

        return self._update(name, promote)

    def clear_stage(self, name: str, stage: str, version: str) -> None:
        def clear(folder: Path, index: dict[str, Any]) -> None:
            if index["stages"].get(stage) == version:
                del index["stages"][stage]

        self._update(name, clear)

    def _set_state(self, name: str, version: str, state: str) -> None:
        def change(folder: Path, index: dict[str, Any]) -> None:
            meta = self._version(index, name, version)
            if meta["state"] == DESTROYED:
                raise SecretError(f"version {version} of secret {name!r} is destroyed")
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
