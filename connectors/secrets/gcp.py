"""Google Secret Manager through ``google-cloud-secret-manager``.

Stages are Secret Manager *version aliases* (``current``, ``previous``, ``pending``), so any
other Secret Manager client can read ``projects/P/secrets/S/versions/current`` and see what
the rotation engine promoted. A promotion is one ``UpdateSecret`` of the alias map guarded by
the secret's etag, so readers never see a moment without ``current`` and two writers cannot
silently overwrite each other. Per-version expiry lives in annotations (``bw-expire-<n>``):
the secret's own ``expire_time`` deletes the whole secret and is reported, never set.

Every call passes ``retry=None`` and a timeout: the library's default retry waits up to a
minute on UNAVAILABLE, and a pipeline worker must fall back to its last-known-good value
within one refresh, not a minute later. Payloads carry a CRC32C checksum both ways.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from connectors.secrets import Secret, SecretError
from connectors.secrets.model import (
    CURRENT,
    DESTROYED,
    DISABLED,
    ENABLED,
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


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli), the checksum Secret Manager uses for payload integrity."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass(frozen=True)
class GcpConfig:
    """Args:
    project: the Google Cloud project holding the secrets.
    emulator_host: ``host:port`` of a local Secret Manager emulator or test server, reached over
        an insecure gRPC channel; unset, the client uses Application Default Credentials.
    timeout: seconds per call.
    """

    project: str
    emulator_host: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GcpConfig:
        return config_from_dict(cls, data)


_STATES = {1: ENABLED, 2: DISABLED, 3: DESTROYED}


def _time(ts: Any) -> datetime | None:
    """A proto timestamp (proto-plus gives DatetimeWithNanoseconds) as an aware datetime."""
    if ts is None or not ts.timestamp():
        return None
    return datetime.fromtimestamp(ts.timestamp(), timezone.utc)


class GcpSecretManager:
    """Secret Manager as a rotatable store."""

    def __init__(self, config: GcpConfig) -> None:
        from google.cloud import secretmanager_v1

        self.config = config
        self._types = secretmanager_v1.types
        if config.emulator_host:
            import grpc
            from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
                SecretManagerServiceGrpcTransport,
            )

            # short reconnect backoff: after an outage the next refresh should reconnect,
            # not wait out gRPC's default backoff of up to two minutes
            channel = grpc.insecure_channel(
                config.emulator_host,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.min_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 2000),
                ],
            )
            self._channel = channel
            transport = SecretManagerServiceGrpcTransport(channel=channel)
            self.client = secretmanager_v1.SecretManagerServiceClient(transport=transport)
        else:
            from google.auth.exceptions import DefaultCredentialsError

            self._channel = None
            try:
                self.client = secretmanager_v1.SecretManagerServiceClient()
            except DefaultCredentialsError:
                raise SecretError(
                    "Secret Manager: no Google credentials found (run 'gcloud auth application-default "
                    "login', set GOOGLE_APPLICATION_CREDENTIALS, or use a service account)"
                ) from None

    # ------------------------------------------------------------------ plumbing

    def _secret_path(self, name: str) -> str:
        return f"projects/{self.config.project}/secrets/{check_name(name)}"

    def _version_path(self, name: str, ref: str) -> str:
        return f"{self._secret_path(name)}/versions/{ref}"

    def _call(self, what: str, method: Callable[..., Any], **request: Any) -> Any:
        from google.api_core import exceptions as gexc

        try:
            return method(**request, retry=None, timeout=self.config.timeout)
        except gexc.NotFound:
            raise SecretNotFound(f"{what}: not found in Secret Manager project {self.config.project}") from None
        except (gexc.Aborted, gexc.FailedPrecondition) as exc:
            raise SecretConflict(f"{what}: the secret changed meanwhile ({exc.message})") from None
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.RetryError) as exc:
            raise SecretUnavailable(f"{what}: Secret Manager unavailable ({type(exc).__name__})") from None
        except gexc.GoogleAPICallError as exc:
            raise SecretError(f"{what}: Secret Manager refused ({type(exc).__name__}: {exc.message})") from None

    def _get(self, name: str) -> Any:
        return self._call(f"secret {name!r}", self.client.get_secret, name=self._secret_path(name))

    def _update(self, name: str, change: Callable[[Any], Any]) -> Any:
        """Read the secret, let ``change`` edit its aliases/annotations (or raise to refuse),
        write both back under the etag read: a concurrent writer makes this fail with
        :class:`SecretConflict` instead of being overwritten. Returns what ``change`` returned."""
        secret = self._get(name)
        result = change(secret)
        update = self._types.Secret(
            name=secret.name,
            version_aliases=dict(secret.version_aliases),
            annotations=dict(secret.annotations),
            etag=secret.etag,
        )
        self._call(
            f"secret {name!r}",
            self.client.update_secret,
            secret=update,
            update_mask={"paths": ["version_aliases", "annotations"]},
        )
        return result

    # ------------------------------------------------------------------ reading

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        response = self._call(
            f"secret {name!r} at {ref!r}",
            self.client.access_secret_version,
            name=self._version_path(name, ref),
        )
        data = response.payload.data
        if "data_crc32c" in response.payload and crc32c(data) != response.payload.data_crc32c:
            raise SecretError(f"secret {name!r} at {ref!r}: payload checksum mismatch")
        version = response.name.rsplit("/", 1)[1]
        expires = expiries(dict(self._get(name).annotations)).get(version)  # one metadata read
        return VersionedSecret(name, version, Secret(data), expires)

    def stages(self, name: str) -> StageView:
        aliases = self._get(name).version_aliases
        if CURRENT not in aliases:
            raise SecretNotFound(f"secret {name!r} has no '{CURRENT}' alias")
        previous = aliases.get(PREVIOUS)
        return StageView(name, str(aliases[CURRENT]), None if previous is None else str(previous), time.time())

    def describe(self, name: str) -> SecretInfo:
        secret = self._get(name)
        listed = self._call(
            f"secret {name!r}", self.client.list_secret_versions, parent=self._secret_path(name)
        )
        annotations = dict(secret.annotations)
        expiry = expiries(annotations)
        stages = {alias: str(v) for alias, v in secret.version_aliases.items() if alias in STAGES}
        by_version: dict[str, set[str]] = {}
        for stage, version in stages.items():
            by_version.setdefault(version, set()).add(stage)
        versions = []
        for item in listed:
            version = item.name.rsplit("/", 1)[1]
            versions.append(
                VersionInfo(
                    version=version,
                    state=_STATES.get(int(item.state), "unknown"),
                    created=_time(item.create_time),
                    expire_time=expiry.get(version),
                    stages=frozenset(by_version.get(version, ())),
                )
            )
        versions.sort(key=lambda v: int(v.version))
        return SecretInfo(name, tuple(versions), stages, annotations, _time(secret.expire_time))

    # ------------------------------------------------------------------ writing

    def ensure(self, name: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            self.client.create_secret(
                parent=f"projects/{self.config.project}",
                secret_id=check_name(name),
                secret={"replication": {"automatic": {}}},
                retry=None,
                timeout=self.config.timeout,
            )
        except gexc.AlreadyExists:
            return
        except (gexc.ServiceUnavailable, gexc.DeadlineExceeded) as exc:
            raise SecretUnavailable(f"secret {name!r}: Secret Manager unavailable ({type(exc).__name__})") from None

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Set ``rotation.next_rotation_time``/``rotation_period`` and ``topics`` so Secret Manager
        publishes ``SECRET_ROTATE`` messages on the policy's schedule. Secret Manager refuses a
        rotation without a topic, so without topics nothing is set (the service's own schedule
        still rotates)."""
        if not topics:
            return
        from google.protobuf import duration_pb2

        update = self._types.Secret(
            name=self._secret_path(name),
            topics=[self._types.Topic(name=t) for t in topics],
            rotation=self._types.Rotation(
                next_rotation_time=next_time, rotation_period=duration_pb2.Duration(seconds=int(period))
            ),
        )
        self._call(
            f"secret {name!r}",
            self.client.update_secret,
            secret=update,
            update_mask={"paths": ["topics", "rotation"]},
        )

    def add_version(
        self, name: str, secret: Secret, *, token: str | None = None, expire_time: datetime | None = None
    ) -> str:
        """AddSecretVersion, then point the ``pending`` alias at it under the etag, only if no
        alias ``pending`` exists. A refused claim disables the new version at once (nothing
        points at it, so nobody else can promote it); a crash in between leaves an enabled
        version with no alias, which the engine finds by fingerprint and discards."""
        data = secret.reveal()
        pending = self._get(name).version_aliases.get(PENDING)
        if pending is not None:
            raise SecretConflict(f"secret {name!r}: version {pending} is already pending")
        created = self._call(
            f"secret {name!r}",
            self.client.add_secret_version,
            parent=self._secret_path(name),
            payload={"data": data, "data_crc32c": crc32c(data)},
        )
        version = created.name.rsplit("/", 1)[1]

        def point(s: Any) -> None:
            if PENDING in s.version_aliases:
                raise SecretConflict(f"secret {name!r}: version {s.version_aliases[PENDING]} is already pending")
            s.version_aliases[PENDING] = int(version)
            if expire_time is not None:
                s.annotations[expiry_key(version)] = expire_time.isoformat()

        try:
            self._update(name, point)
        except SecretConflict:
            self.disable(name, version)
            raise
        return version

    def _check_enabled(self, name: str, version: str) -> None:
        found = self._call(
            f"secret {name!r} version {version}",
            self.client.get_secret_version,
            name=self._version_path(name, version),
        )
        if _STATES.get(int(found.state)) != ENABLED:
            raise SecretConflict(f"secret {name!r}: version {version} is not enabled")

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        self._check_enabled(name, version)

        def promote(s: Any) -> str | None:
            aliases = s.version_aliases
            current = aliases.get(CURRENT)
            if aliases.get(PENDING) != int(version) or current != (None if expect_current is None else int(expect_current)):
                raise SecretConflict(
                    f"secret {name!r}: cannot promote version {version}: pending is {aliases.get(PENDING)}, "
                    f"current is {current} (expected {expect_current})"
                )
            del aliases[PENDING]
            aliases[CURRENT] = int(version)
            if expect_current is not None:
                aliases[PREVIOUS] = int(expect_current)
            return expect_current

        return self._update(name, promote)

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        def clear(s: Any) -> bool:
            if s.version_aliases.get(stage) != int(version):
                return False
            del s.version_aliases[stage]
            return True

        return retry_conflicts(lambda: self._update(name, clear))

    def disable(self, name: str, version: str) -> None:
        if self._get(name).version_aliases.get(CURRENT) == int(version):
            raise SecretConflict(f"secret {name!r}: version {version} is current")
        self._call(
            f"secret {name!r} version {version}",
            self.client.disable_secret_version,
            name=self._version_path(name, version),
        )

    def enable(self, name: str, version: str) -> None:
        self._call(
            f"secret {name!r} version {version}",
            self.client.enable_secret_version,
            name=self._version_path(name, version),
        )

    def destroy(self, name: str, version: str) -> None:
        """Destroy the version's data for good, and drop its aliases and expiry annotation."""
        self._call(
            f"secret {name!r} version {version}",
            self.client.destroy_secret_version,
            name=self._version_path(name, version),
        )

        def forget(s: Any) -> None:
            for alias in [a for a, v in s.version_aliases.items() if v == int(version)]:
                del s.version_aliases[alias]
            s.annotations.pop(expiry_key(version), None)

        self._update(name, forget)

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        else:
            self.client.transport.close()
