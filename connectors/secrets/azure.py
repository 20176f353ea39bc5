"""Azure Key Vault secrets through ``azure-keyvault-secrets``.

Key Vault versions a secret on every ``set`` (random 32-hex version ids), can enable and
disable each version, keeps per-version ``exp``/``nbf`` and up to 15 tags per version, and
has no aliases, no secret-level metadata and no conditional write. So:

* **Stages are tags on the versions.** ``bw-stage: pending`` marks the version a rotation
  added; promotion is *one* ``PATCH`` retagging it ``bw-stage: current``. Several versions may
  carry ``current``: the newest is current and the next newest (enabled) one is previous, so a
  promotion is atomic for readers (no moment without a current version) and "previous" moves
  with it for free. ``disable`` and ``clear_stage`` drop the tag. "Newest" is by ``bw-seq``
  (written with each version: Key Vault's ``created`` has one-second resolution, so a version
  added in the same second as the one before it would otherwise tie), then ``created``, then id.
* **The pending claim is write-then-check**, as Key Vault has no compare-and-set: a rotation
  adds its version tagged ``pending`` only if no enabled version is pending, then lists the
  versions again and goes on only if its version is the only pending one; otherwise it untags
  and disables its own and reports a conflict. Each rotation writes before it reads, so two
  cannot both find themselves alone: at most one goes on (both may back off). Promotion
  re-checks that our version is still an enabled ``pending`` and ``current`` is what the
  rotation started from; only the claim's holder ever promotes, so the remaining gap between
  that check and the ``PATCH`` is not a race between two rotations. (An earlier "oldest claim
  wins" rule let a rotation that had found itself alone lose to a later one whose version
  sorted first within the same second; the two-homes test caught it.)
* **Expiry is Key Vault's own ``exp``** per version (informational in Key Vault: the service
  still returns the value, consumers refuse it, as with every store).
* Values are text in Key Vault; a non-UTF-8 value is stored base64-encoded with content type
  ``application/vnd.beamwright.base64`` (and decoded on read).
* ``destroy`` is refused: Key Vault deletes whole secrets, never one version (``disable`` is
  the per-version retirement).

Other Key Vault clients reading the secret without a version get the *latest* version, which
between a rotation's ``create`` and ``finish`` is the pending one; beamwright's consumers read
by stage. Names: Key Vault allows letters, digits and ``-`` only.

Credentials are never in the config: ``credential: default`` uses azure-identity's
``DefaultAzureCredential`` (managed identity, workload identity, environment service principal,
``az login``); ``token_env`` names a variable holding a bearer token for
``https://vault.azure.net`` (e.g. ``az account get-access-token --resource
https://vault.azure.net``), which is how the tests authenticate against a local server.
SDK retries are off and every call has a timeout: a worker must fall back to its
last-known-good value within one refresh.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from connectors.secrets import Secret, SecretError
from connectors.secrets.model import (
    CURRENT,
    DISABLED,
    ENABLED,
    LATEST,
    PENDING,
    PREVIOUS,
    SecretConflict,
    SecretInfo,
    SecretNotFound,
    SecretUnavailable,
    StageView,
    VersionedSecret,
    VersionInfo,
    check_name,
)
from connectors.secrets.registry import config_from_dict

STAGE_TAG = "bw-stage"
SEQ_TAG = "bw-seq"
BASE64_TYPE = "application/vnd.beamwright.base64"
SCOPE = "https://vault.azure.net/.default"
_AZURE_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")


@dataclass(frozen=True)
class AzureConfig:
    """Args:
    vault_url: the vault's URL, ``https://<name>.vault.azure.net``.
    credential: ``default`` for azure-identity's ``DefaultAzureCredential``; ignored when
        ``token_env`` is set.
    token_env: an environment variable holding a bearer token for Key Vault.
    name_prefix: prepended to secret names (letters, digits, ``-``), to keep teams apart.
    ca_file: a CA bundle to verify the vault's TLS certificate with (a private endpoint behind
        a TLS-inspecting proxy, a local test server).
    verify_challenge_resource: check that the vault's auth challenge names a Key Vault domain
        (off only for a vault not under ``*.vault.azure.net``, like a local test server).
    timeout: seconds to connect and to read, per call.
    """

    vault_url: str
    credential: str = "default"
    token_env: str | None = None
    name_prefix: str = ""
    ca_file: str | None = None
    verify_challenge_resource: bool = True
    timeout: float = 10.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AzureConfig:
        return config_from_dict(cls, data)


class _EnvToken:
    """A TokenCredential serving the bearer token in an environment variable (read per call,
    so a sidecar that refreshes the variable's file-backed source is picked up)."""

    def __init__(self, variable: str) -> None:
        self.variable = variable
        self.get_token()  # fail at construction, naming the variable, not at the first call

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        token = os.environ.get(self.variable)
        if not token:
            raise SecretError(
                f"Key Vault: environment variable {self.variable} (token_env) is not set or empty"
            )
        return AccessToken(token, int(time.time()) + 3600)

    def close(self) -> None:
        """Nothing to release; the SDK closes credentials with the client."""


def _credential(config: AzureConfig) -> Any:
    if config.token_env:
        return _EnvToken(config.token_env)
    if config.credential != "default":
        raise SecretError(
            f"Key Vault: unknown credential {config.credential!r}; use 'default' (azure-identity's "
            "DefaultAzureCredential) or set token_env"
        )
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise SecretError(
            "Key Vault: credential 'default' needs azure-identity (pip install 'beamwright[azure]'), "
            "or set token_env"
        ) from None
    return DefaultAzureCredential()


def _order(props: Any) -> tuple[int, float, str]:
    """Newest last: our sequence tag, then Key Vault's creation second, then the id."""
    tags = props.tags or {}
    seq = tags.get(SEQ_TAG, "")
    created = props.created_on.timestamp() if props.created_on else 0.0
    return (int(seq) if seq.isdigit() else 0, created, props.version)


def _pending(props: Any) -> bool:
    """An enabled version tagged ``pending``: a rotation's claim (or a rival's, mid-retreat)."""
    return bool(props.enabled) and (props.tags or {}).get(STAGE_TAG) == PENDING


@dataclass(frozen=True)
class _Resolved:
    """The stages of one listing: which version each points at, by the rules above."""

    current: str | None
    previous: str | None
    pending: str | None

    @classmethod
    def of(cls, versions: Sequence[Any]) -> _Resolved:
        enabled = [p for p in versions if p.enabled]
        currents = [
            p.version
            for p in sorted(enabled, key=_order, reverse=True)
            if (p.tags or {}).get(STAGE_TAG) == CURRENT
        ]
        pendings = sorted((p for p in enabled if _pending(p)), key=_order)
        return cls(
            currents[0] if currents else None,
            currents[1] if len(currents) > 1 else None,
            pendings[0].version if pendings else None,  # two only while one backs off
        )

    def stages(self) -> dict[str, str]:
        pairs = ((CURRENT, self.current), (PREVIOUS, self.previous), (PENDING, self.pending))
        return {stage: version for stage, version in pairs if version is not None}


def _time(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(timezone.utc)


class AzureKeyVault:
    """Azure Key Vault as a rotatable store."""

    def __init__(self, config: AzureConfig) -> None:
        from azure.keyvault.secrets import SecretClient

        if config.name_prefix and not _AZURE_NAME.match(config.name_prefix):
            raise SecretError(
                f"Key Vault: name_prefix {config.name_prefix!r} may hold letters, digits and '-' only"
            )
        self.config = config
        options: dict[str, Any] = {
            "verify_challenge_resource": config.verify_challenge_resource,
            "retry_total": 0,
            "connection_timeout": config.timeout,
            "read_timeout": config.timeout,
        }
        if config.ca_file:
            options["connection_verify"] = config.ca_file
        self.client = SecretClient(config.vault_url, _credential(config), **options)

    # ------------------------------------------------------------------ plumbing

    def _name(self, name: str) -> str:
        check_name(name)
        full = self.config.name_prefix + name
        if not _AZURE_NAME.match(full):
            raise SecretError(
                f"invalid Key Vault secret name {full!r}: Key Vault allows letters, digits and '-' only "
                "(at most 127 characters); rename the secret"
            )
        return full

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``method(*args, **kwargs)`` with the SDK's errors as SecretErrors naming status and
        error code only: a response body is never quoted, so no value can ride along."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            return method(*args, **kwargs)
        except ResourceNotFoundError:
            raise SecretNotFound(
                f"{what}: not found in Key Vault {self.config.vault_url}"
            ) from None
        except ClientAuthenticationError as exc:
            raise SecretError(
                f"{what}: Key Vault refused the credential (HTTP {exc.status_code or 'n/a'}); check the token "
                "or identity and its role on the vault (Key Vault Secrets User to read, Officer to rotate)"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SecretUnavailable(
                f"{what}: Key Vault unavailable ({type(exc).__name__})"
            ) from None
        except HttpResponseError as exc:
            code = exc.error.code if exc.error is not None else None
            inner = (exc.error.innererror or {}).get("code") if exc.error is not None else None
            if exc.status_code == 429 or (exc.status_code or 0) >= 500:
                raise SecretUnavailable(
                    f"{what}: Key Vault unavailable (HTTP {exc.status_code})"
                ) from None
            if inner == "SecretDisabled":
                raise SecretError(f"{what}: the version is disabled in Key Vault") from None
            raise SecretError(
                f"{what}: Key Vault refused (HTTP {exc.status_code} {code or ''})".rstrip() + ")"
            ) from None

    def _versions(self, name: str) -> list[Any]:
        full = self._name(name)
        return self._call(
            f"secret {name!r}", lambda: list(self.client.list_properties_of_secret_versions(full))
        )

    def _resolve(self, name: str) -> tuple[list[Any], _Resolved]:
        versions = self._versions(name)
        return versions, _Resolved.of(versions)

    def _set_tag(self, name: str, props: Any, stage: str | None) -> None:
        tags = {k: v for k, v in (props.tags or {}).items() if k != STAGE_TAG}
        if stage is not None:
            tags[STAGE_TAG] = stage
        self._call(
            f"secret {name!r} version {props.version}",
            self.client.update_secret_properties,
            self._name(name),
            props.version,
            tags=tags,
        )

    @staticmethod
    def _find(versions: Iterable[Any], version: str) -> Any:
        for props in versions:
            if props.version == version:
                return props
        return None

    # ------------------------------------------------------------------ reading

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        version = ref
        if ref in (CURRENT, PREVIOUS, PENDING, LATEST):
            versions, resolved = self._resolve(name)
            if ref == LATEST:
                enabled = sorted((p for p in versions if p.enabled), key=_order)
                version = enabled[-1].version if enabled else None
            else:
                version = getattr(resolved, ref)
            if version is None:
                raise SecretNotFound(f"secret {name!r} has no {ref!r} version in Key Vault")
        got = self._call(
            f"secret {name!r} at {ref!r}", self.client.get_secret, self._name(name), version
        )
        value = got.value or ""
        if got.properties.content_type == BASE64_TYPE:
            data = base64.b64decode(value)
        else:
            data = value.encode("utf-8")
        return VersionedSecret(
            name, got.properties.version, Secret(data), _time(got.properties.expires_on)
        )

    def stages(self, name: str) -> StageView:
        _, resolved = self._resolve(name)
        if resolved.current is None:
            raise SecretNotFound(f"secret {name!r} has no current version in Key Vault")
        return StageView(name, resolved.current, resolved.previous, time.time())

    def describe(self, name: str) -> SecretInfo:
        versions, resolved = self._resolve(name)
        stages = resolved.stages()
        by_version: dict[str, set[str]] = {}
        for stage, version in stages.items():
            by_version.setdefault(version, set()).add(stage)
        infos = tuple(
            VersionInfo(
                version=p.version,
                state=ENABLED if p.enabled else DISABLED,
                created=_time(p.created_on),
                expire_time=_time(p.expires_on),
                stages=frozenset(by_version.get(p.version, ())),
            )
            for p in sorted(versions, key=_order)
        )
        return SecretInfo(name, infos, stages)

    # ------------------------------------------------------------------ writing

    def ensure(self, name: str) -> None:
        """Nothing to create: Key Vault makes the secret with its first version."""
        self._name(name)

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Nothing to set: Key Vault's rotation policies exist for keys, not secrets (Event
        Grid's ``SecretNearExpiry`` is driven by ``exp``, which the engine writes)."""

    def add_version(
        self,
        name: str,
        secret: Secret,
        *,
        token: str | None = None,
        expire_time: datetime | None = None,
    ) -> str:
        versions = self._versions_or_none(name)
        if (pending := _Resolved.of(versions).pending) is not None:
            raise SecretConflict(f"secret {name!r}: version {pending} is already pending")
        seq = max((_order(p)[0] for p in versions), default=0) + 1
        data = secret.reveal()
        try:
            value, content_type = data.decode("utf-8"), None
        except UnicodeDecodeError:
            value, content_type = base64.b64encode(data).decode("ascii"), BASE64_TYPE
        tags = {STAGE_TAG: PENDING, SEQ_TAG: str(seq)}
        if token:
            tags["bw-rotation"] = token
        created = self._call(
            f"secret {name!r}",
            self.client.set_secret,
            self._name(name),
            value,
            tags=tags,
            content_type=content_type,
            expires_on=expire_time,
        )
        version = created.properties.version
        after = self._versions(name)
        rivals = [p.version for p in after if p.version != version and _pending(p)]
        if rivals:  # another rotation claimed meanwhile: retire ours, nobody points at it
            mine = self._find(after, version)
            if mine is not None:
                self._set_tag(name, mine, None)
            self._set_enabled(name, version, False)
            raise SecretConflict(f"secret {name!r}: version {rivals[0]} is already pending")
        return version

    def _versions_or_none(self, name: str) -> list[Any]:
        try:
            return self._versions(name)
        except SecretNotFound:
            return []

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        versions, resolved = self._resolve(name)
        mine = self._find(versions, version)
        if mine is None or not _pending(mine) or resolved.current != expect_current:
            raise SecretConflict(
                f"secret {name!r}: cannot promote version {version}: it is "
                f"{'an enabled pending version' if mine is not None and _pending(mine) else 'not pending'}, "
                f"current is {resolved.current} (expected {expect_current})"
            )
        # the one write readers see: current moves, and previous with it
        self._set_tag(name, mine, CURRENT)
        # older demoted versions lose their tag, as an alias would move off them
        for props in versions:
            if (
                props.version not in (version, expect_current)
                and (props.tags or {}).get(STAGE_TAG) == CURRENT
            ):
                self._set_tag(name, props, None)
        return expect_current

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        versions, resolved = self._resolve(name)
        mine = self._find(versions, version)
        holds = (
            _pending(mine)
            if stage == PENDING and mine is not None
            else getattr(resolved, stage) == version
        )
        if not holds:
            return False
        self._set_tag(name, mine, None)
        return True

    def disable(self, name: str, version: str) -> None:
        versions, resolved = self._resolve(name)
        if resolved.current == version:
            raise SecretConflict(f"secret {name!r}: version {version} is current")
        props = self._find(versions, version)
        if props is None:
            raise SecretNotFound(f"secret {name!r}: no version {version} in Key Vault")
        if STAGE_TAG in (props.tags or {}):
            self._set_tag(name, props, None)
        self._set_enabled(name, version, False)

    def enable(self, name: str, version: str) -> None:
        self._set_enabled(name, version, True)

    def _set_enabled(self, name: str, version: str, enabled: bool) -> None:
        """Key Vault's own per-version switch: one PATCH of ``enabled``, shared by disable and
        enable so both go through the same timeout and error mapping."""
        self._call(
            f"secret {name!r} version {version}",
            self.client.update_secret_properties,
            self._name(name),
            version,
            enabled=enabled,
        )

    def destroy(self, name: str, version: str) -> None:
        raise SecretError(
            "Azure Key Vault cannot destroy a single version (it deletes whole secrets); use disable"
        )

    def close(self) -> None:
        self.client.close()
