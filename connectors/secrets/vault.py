"""HashiCorp Vault's KV version 2 engine through hvac.

KV v2 numbers versions and can soft-delete (``disable``), undelete (``enable``) and destroy
them, but has no aliases, and its metadata endpoint has no check-and-set. So the stage
pointers live in a companion KV v2 secret ``<name>/_stages`` (``{"current": "7", "previous":
"6", "bw-expire-7": "..."}``; user names cannot contain ``/``, so it never clashes), and every
change to it is written with Vault's ``cas`` option set to the companion version it read: two
rotation services can never both move a pointer from the same state, the loser gets a
:class:`SecretConflict`. Values are stored as text under one field (``value`` by default), the
shape other Vault clients expect.

The Vault token is a reference (an environment variable or a file, e.g. Vault Agent's sink),
never part of the config, so the config can travel to pipeline workers and policy files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.secrets import EnvSecret, FileSecret, Secret, SecretError
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
    SecretUnavailable,
    StageView,
    VersionedSecret,
    VersionInfo,
    check_name,
    expiries,
    expiry_key,
    retry_conflicts,
)
from connectors.secrets.registry import config_from_dict

STAGES_SUFFIX = "/_stages"


@dataclass(frozen=True)
class VaultConfig:
    """Args:
    url: Vault's address.
    mount: where the KV v2 engine is mounted.
    path_prefix: prepended to secret names (``team/``).
    token_env / token_file: where the Vault token is (the file wins when both are set).
    namespace: Vault Enterprise namespace.
    field: the key of the value inside each version's data.
    timeout: seconds per request.
    """

    url: str
    mount: str = "secret"
    path_prefix: str = ""
    token_env: str = "VAULT_TOKEN"
    token_file: str | None = None
    namespace: str | None = None
    field: str = "value"
    timeout: float = 10.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaultConfig:
        return config_from_dict(cls, data)


def _parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


class VaultKv2:
    """Vault KV v2 as a rotatable store."""

    def __init__(self, config: VaultConfig) -> None:
        import hvac

        self.config = config
        ref = FileSecret(config.token_file) if config.token_file else EnvSecret(config.token_env)
        self.client = hvac.Client(
            url=config.url,
            token=ref.resolve().reveal().decode("utf-8"),
            namespace=config.namespace,
            timeout=config.timeout,
        )
        self.kv = self.client.secrets.kv.v2

    def _path(self, name: str) -> str:
        return self.config.path_prefix + check_name(name)

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import requests
        from hvac import exceptions as hexc

        try:
            return method(*args, mount_point=self.config.mount, **kwargs)
        except hexc.InvalidPath as exc:
            metadata = ((exc.json or {}).get("data") or {}).get("metadata") or {}
            if metadata.get("deletion_time") or metadata.get("destroyed"):
                raise SecretError(f"{what}: the version is disabled or destroyed") from None
            raise SecretNotFound(f"{what}: not found in Vault mount {self.config.mount!r}") from None
        except hexc.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                raise SecretConflict(f"{what}: the stage pointers changed meanwhile (cas)") from None
            raise SecretError(f"{what}: Vault refused (InvalidRequest)") from None
        except (hexc.Forbidden, hexc.Unauthorized):
            raise SecretError(f"{what}: Vault denied the request (check the token's policy)") from None
        except (hexc.VaultDown, hexc.BadGateway, requests.ConnectionError, requests.Timeout) as exc:
            raise SecretUnavailable(f"{what}: Vault unavailable ({type(exc).__name__})") from None
        except hexc.VaultError as exc:
            raise SecretError(f"{what}: Vault refused ({type(exc).__name__})") from None

    def _metadata(self, name: str) -> dict[str, Any]:
        return self._call(f"secret {name!r}", self.kv.read_secret_metadata, self._path(name))["data"]

    def _pointers(self, name: str) -> tuple[dict[str, str], int]:
        """The companion document (stages and expiries) and its version (0 if none yet)."""
        try:
            read = self._call(
                f"secret {name!r} stages",
                self.kv.read_secret_version,
                self._path(name) + STAGES_SUFFIX,
                raise_on_deleted_version=True,
            )["data"]
        except SecretNotFound:
            return {}, 0
        return dict(read.get("data") or {}), int(read["metadata"]["version"])

    def _cas(self, name: str, change: Callable[[dict[str, str]], Any]) -> Any:
        """Read the pointers, let ``change`` edit them (or raise to refuse), write them back
        with ``cas`` = the version read; returns what ``change`` returned."""
        pointers, version = self._pointers(name)
        result = change(pointers)
        self._call(
            f"secret {name!r} stages",
            self.kv.create_or_update_secret,
            self._path(name) + STAGES_SUFFIX,
            secret=pointers,
            cas=version,
        )
        return result

    @staticmethod
    def _stages(pointers: dict[str, str]) -> dict[str, str]:
        return {stage: pointers[stage] for stage in STAGES if pointers.get(stage)}

    # ------------------------------------------------------------------ reading

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        pointers = self._pointers(name)[0]
        if ref in STAGES:
            version: str | None = self._stages(pointers).get(ref)
            if version is None:
                raise SecretNotFound(f"secret {name!r} has no {ref} version")
        elif ref == LATEST:
            version = None
        else:
            version = ref
        read = self._call(
            f"secret {name!r} at {ref!r}",
            self.kv.read_secret_version,
            self._path(name),
            version=None if version is None else int(version),
            raise_on_deleted_version=True,
        )["data"]
        value = (read.get("data") or {}).get(self.config.field)
        if value is None:
            raise SecretError(f"secret {name!r} at {ref!r} has no field {self.config.field!r}")
        number = str(read["metadata"]["version"])
        return VersionedSecret(name, number, Secret(value.encode("utf-8")), expiries(pointers).get(number))

    def stages(self, name: str) -> StageView:
        stages = self._stages(self._pointers(name)[0])
        if CURRENT not in stages:
            raise SecretNotFound(f"secret {name!r} has no current version")
        return StageView(name, stages[CURRENT], stages.get(PREVIOUS), time.time())

    def describe(self, name: str) -> SecretInfo:
        metadata = self._metadata(name)
        custom = dict(metadata.get("custom_metadata") or {})
        pointers = self._pointers(name)[0]
        stages = self._stages(pointers)
        expiry = expiries(pointers)
        versions = []
        for version, meta in sorted(metadata.get("versions", {}).items(), key=lambda kv: int(kv[0])):
            state = DESTROYED if meta.get("destroyed") else DISABLED if meta.get("deletion_time") else ENABLED
            versions.append(
                VersionInfo(
                    version=version,
                    state=state,
                    created=_parse_time(meta.get("created_time")),
                    expire_time=expiry.get(version),
                    stages=frozenset(s for s, v in stages.items() if v == version),
                )
            )
        return SecretInfo(name, tuple(versions), stages, custom)

    # ------------------------------------------------------------------ writing

    def ensure(self, name: str) -> None:
        """Nothing to do: KV v2 creates a secret with its first version."""

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Nothing to set: Vault KV v2 has no rotation schedule."""

    def add_version(
        self, name: str, secret: Secret, *, token: str | None = None, expire_time: datetime | None = None
    ) -> str:
        try:
            text = secret.reveal().decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError("Vault KV stores text: the value is not valid UTF-8") from None
        pending = self._pointers(name)[0].get(PENDING)
        if pending:
            raise SecretConflict(f"secret {name!r}: version {pending} is already pending")
        written = self._call(
            f"secret {name!r}",
            self.kv.create_or_update_secret,
            self._path(name),
            secret={self.config.field: text},
        )
        version = str(written["data"]["version"])

        def point(pointers: dict[str, str]) -> None:
            if pointers.get(PENDING):
                raise SecretConflict(f"secret {name!r}: version {pointers[PENDING]} is already pending")
            pointers[PENDING] = version
            if expire_time is not None:
                pointers[expiry_key(version)] = expire_time.isoformat()

        try:
            self._cas(name, point)
        except SecretConflict:
            self.disable(name, version)  # nothing points at it: nobody can promote it
            raise
        return version

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        def promote(pointers: dict[str, str]) -> str | None:
            if pointers.get(PENDING) != version or pointers.get(CURRENT) != expect_current:
                raise SecretConflict(
                    f"secret {name!r}: cannot promote version {version}: pending is {pointers.get(PENDING)}, "
                    f"current is {pointers.get(CURRENT)} (expected {expect_current})"
                )
            del pointers[PENDING]
            pointers[CURRENT] = version
            if expect_current is not None:
                pointers[PREVIOUS] = expect_current
            return expect_current

        found = self.describe(name).version(version)
        if found is None or found.state != ENABLED:
            raise SecretConflict(f"secret {name!r}: version {version} is not enabled")
        return self._cas(name, promote)

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        def clear(pointers: dict[str, str]) -> bool:
            if pointers.get(stage) != version:
                return False
            del pointers[stage]
            return True

        return retry_conflicts(lambda: self._cas(name, clear))

    def disable(self, name: str, version: str) -> None:
        """Soft-delete: the data stays, reads fail until ``enable``. Refused for current."""
        if self._pointers(name)[0].get(CURRENT) == version:
            raise SecretConflict(f"secret {name!r}: version {version} is current")
        self._call(f"secret {name!r}", self.kv.delete_secret_versions, self._path(name), versions=[int(version)])

    def enable(self, name: str, version: str) -> None:
        self._call(f"secret {name!r}", self.kv.undelete_secret_versions, self._path(name), versions=[int(version)])

    def destroy(self, name: str, version: str) -> None:
        self._call(f"secret {name!r}", self.kv.destroy_secret_versions, self._path(name), versions=[int(version)])

        def forget(pointers: dict[str, str]) -> None:
            pointers.pop(expiry_key(version), None)
            for stage in [s for s in STAGES if pointers.get(s) == version]:
                del pointers[stage]

        self._cas(name, forget)

    def close(self) -> None:
        self.client.adapter.close()
