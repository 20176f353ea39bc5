"""AWS Secrets Manager through boto3.

Stages are AWS's own staging labels (``AWSCURRENT``, ``AWSPREVIOUS``, ``AWSPENDING``), used as
AWS's rotation contract (createSecret / setSecret / testSecret / finishSecret) uses them, so
what the rotation engine leaves behind is what AWS's console, SDKs and rotation Lambdas expect:

* createSecret: ``PutSecretValue`` with the rotation token as ``ClientRequestToken`` (so the
  version id *is* the token, known before the call, and a retry after a crash is idempotent)
  and ``VersionStages=[AWSPENDING]``, refused when another version already holds
  ``AWSPENDING`` (AWS's "a rotation is already in progress"). The very first version of a
  secret also gets ``AWSCURRENT`` from AWS itself.
* finishSecret: ``UpdateSecretVersionStage`` moves ``AWSCURRENT`` to the new version with
  ``RemoveFromVersionId`` = the current version the rotation started from. AWS rejects the
  move if that version no longer holds ``AWSCURRENT``: that is the compare-and-set that stops
  two rotations from both promoting. AWS moves ``AWSPREVIOUS`` itself; the engine then removes
  ``AWSPENDING`` (also when the version was already current, as after the first version).

AWS has no per-version disable or destroy. ``disable`` removes every staging label, which is
AWS's notion of a retired ("deprecated") version that it deletes on its own schedule; the
credential itself stops working because the rotation engine revokes it at the issuing system.
``destroy`` is refused with that explanation. Per-version expiry is kept in secret tags.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
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
    expiries,
    expiry_key,
)
from connectors.secrets.registry import config_from_dict

LABELS = {CURRENT: "AWSCURRENT", PREVIOUS: "AWSPREVIOUS", PENDING: "AWSPENDING"}
_STAGE_OF = {label: stage for stage, label in LABELS.items()}


@dataclass(frozen=True)
class AwsConfig:
    """Args:
    region: AWS region.
    endpoint_url: a non-default endpoint (a VPC endpoint, LocalStack, moto).
    profile: a named profile; credentials otherwise come from boto3's default chain.
    timeout: seconds to connect and to read, per call (boto3 retries are off).
    """

    region: str = "us-east-1"
    endpoint_url: str | None = None
    profile: str | None = None
    timeout: float = 10.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AwsConfig:
        return config_from_dict(cls, data)


class AwsSecretsManager:
    """AWS Secrets Manager as a rotatable store."""

    def __init__(self, config: AwsConfig) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(profile_name=config.profile, region_name=config.region)
        self.client = session.client(
            "secretsmanager",
            endpoint_url=config.endpoint_url,
            config=Config(
                connect_timeout=config.timeout,
                read_timeout=config.timeout,
                retries={"total_max_attempts": 1},
            ),
        )

    def _call(self, what: str, method: Callable[..., Any], *, conflict: str = "", **request: Any) -> Any:
        """``method(**request)`` with AWS's errors as SecretErrors; ``conflict`` names the
        precondition an ``InvalidParameterException`` means here (a stage moved under us)."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            ReadTimeoutError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            return method(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                raise SecretNotFound(f"{what}: not found in AWS Secrets Manager") from None
            if conflict and code == "InvalidParameterException":
                raise SecretConflict(f"{what}: {conflict}") from None
            raise SecretError(f"{what}: AWS Secrets Manager refused ({code})") from None
        except NoCredentialsError:
            raise SecretError(
                f"{what}: no AWS credentials (set a profile, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an instance role)"
            ) from None
        except (BotoConnectionError, ReadTimeoutError) as exc:
            raise SecretUnavailable(f"{what}: AWS Secrets Manager unavailable ({type(exc).__name__})") from None
        except BotoCoreError as exc:
            raise SecretError(f"{what}: {type(exc).__name__}") from None

    def _describe(self, name: str) -> dict[str, Any]:
        return self._call(f"secret {name!r}", self.client.describe_secret, SecretId=check_name(name))

    @staticmethod
    def _holder(described: dict[str, Any], label: str) -> str | None:
        for version, labels in described.get("VersionIdsToStages", {}).items():
            if label in labels:
                return version
        return None

    # ------------------------------------------------------------------ reading

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        request: dict[str, Any] = {"SecretId": check_name(name)}
        if ref in LABELS:
            request["VersionStage"] = LABELS[ref]
        elif ref == LATEST:
            raise SecretError(
                "AWS Secrets Manager has no version order to take 'latest' from; use 'current'"
            )
        else:
            request["VersionId"] = ref
        got = self._call(f"secret {name!r} at {ref!r}", self.client.get_secret_value, **request)
        data = got["SecretBinary"] if "SecretBinary" in got else got["SecretString"].encode("utf-8")
        tags = {t["Key"]: t["Value"] for t in self._describe(name).get("Tags", [])}  # per-version expiry
        return VersionedSecret(name, got["VersionId"], Secret(data), expiries(tags).get(got["VersionId"]))

    def stages(self, name: str) -> StageView:
        described = self._describe(name)
        current = self._holder(described, LABELS[CURRENT])
        if current is None:
            raise SecretNotFound(f"secret {name!r} has no AWSCURRENT version")
        return StageView(name, current, self._holder(described, LABELS[PREVIOUS]), time.time())

    def describe(self, name: str) -> SecretInfo:
        described = self._describe(name)
        tags = {t["Key"]: t["Value"] for t in described.get("Tags", [])}
        listed = self._call(
            f"secret {name!r}",
            self.client.list_secret_version_ids,
            SecretId=name,
            IncludeDeprecated=True,
        )
        expiry = expiries(tags)
        versions = []
        for item in listed.get("Versions", []):
            labels = set(item.get("VersionStages", []))
            versions.append(
                VersionInfo(
                    version=item["VersionId"],
                    state=ENABLED if labels else DISABLED,
                    created=item.get("CreatedDate"),
                    expire_time=expiry.get(item["VersionId"]),
                    stages=frozenset(_STAGE_OF[label] for label in labels if label in _STAGE_OF),
                )
            )
        versions.sort(key=lambda v: v.created or datetime.min)
        stages = {s: v.version for v in versions for s in v.stages}
        return SecretInfo(name, tuple(versions), stages, tags)

    # ------------------------------------------------------------------ writing

    def ensure(self, name: str) -> None:
        try:
            self._describe(name)
        except SecretNotFound:
            self._call(f"secret {name!r}", self.client.create_secret, Name=name)

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Nothing to set: AWS's ``RotationRules`` need a rotation Lambda, and rotation runs here."""

    def add_version(
        self, name: str, secret: Secret, *, token: str | None = None, expire_time: datetime | None = None
    ) -> str:
        described = self._describe(name)
        pending = self._holder(described, LABELS[PENDING])
        token = token or str(uuid.uuid4())
        if pending is not None and pending != token and pending != self._holder(described, LABELS[CURRENT]):
            raise SecretConflict(f"secret {name!r}: version {pending} is already AWSPENDING (a rotation is in progress)")
        value = secret.reveal()
        try:
            payload: dict[str, Any] = {"SecretString": value.decode("utf-8")}
        except UnicodeDecodeError:
            payload = {"SecretBinary": value}
        put = self._call(
            f"secret {name!r}",
            self.client.put_secret_value,
            SecretId=check_name(name),
            ClientRequestToken=token,
            VersionStages=[LABELS[PENDING]],
            **payload,
        )
        version = put["VersionId"]
        if expire_time is not None:
            self._call(
                f"secret {name!r}",
                self.client.tag_resource,
                SecretId=name,
                Tags=[{"Key": expiry_key(version), "Value": expire_time.isoformat()}],
            )
        return version

    def _remove(self, name: str, stage: str, version: str) -> bool:
        """Take ``stage`` off ``version`` if it is there; AWS checks the holder (compare-and-set)."""
        try:
            self._call(
                f"secret {name!r}",
                self.client.update_secret_version_stage,
                conflict=f"{LABELS[stage]} is no longer on version {version}",
                SecretId=name,
                VersionStage=LABELS[stage],
                RemoveFromVersionId=version,
            )
        except SecretConflict:
            return False
        return True

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        described = self._describe(name)
        current = self._holder(described, LABELS[CURRENT])
        if self._holder(described, LABELS[PENDING]) != version:
            raise SecretConflict(f"secret {name!r}: version {version} is no longer AWSPENDING")
        if current != version:
            if expect_current is None:
                raise SecretConflict(f"secret {name!r}: version {current} became current meanwhile")
            self._call(
                f"secret {name!r}",
                self.client.update_secret_version_stage,
                conflict=f"AWSCURRENT is no longer on version {expect_current}",
                SecretId=name,
                VersionStage=LABELS[CURRENT],
                MoveToVersionId=version,
                RemoveFromVersionId=expect_current,
            )  # AWS moves AWSPREVIOUS to `expect_current` itself
        elif expect_current is not None:
            raise SecretConflict(f"secret {name!r}: version {version} is already current")
        self._remove(name, PENDING, version)
        return expect_current

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        return self._remove(name, stage, version)

    def disable(self, name: str, version: str) -> None:
        """Remove every staging label: AWS then treats the version as deprecated. The current
        version is refused: taking ``AWSCURRENT`` away would leave consumers nothing to read."""
        labels = self._describe(name).get("VersionIdsToStages", {}).get(version, [])
        if LABELS[CURRENT] in labels:
            raise SecretConflict(f"secret {name!r}: version {version} is AWSCURRENT")
        for label in labels:
            if label in _STAGE_OF:
                self._remove(name, _STAGE_OF[label], version)

    def enable(self, name: str, version: str) -> None:
        raise SecretError(
            "AWS Secrets Manager has no per-version enable; attach a staging label with promote"
        )

    def destroy(self, name: str, version: str) -> None:
        raise SecretError(
            "AWS Secrets Manager cannot destroy a single version: versions without staging "
            "labels are deprecated and deleted by AWS itself (use disable)"
        )

    def close(self) -> None:
        self.client.close()
