"""What every secret provider speaks: stages, version metadata and the two provider protocols.

Rotation state is three *stages* that point at versions: ``current`` (what consumers use),
``previous`` (still valid during the overlap window after a rotation) and ``pending`` (added,
not yet verified). Each store keeps them in its own native form (Secret Manager aliases, AWS
staging labels, Vault custom metadata, the file store's index), so the engine and the pipeline
only ever say "current" and never need to know which store they talk to.

Metadata types here never hold a value; only :class:`VersionedSecret` does, through a
:class:`~connectors.secrets.Secret`, so it inherits the refusal to be printed or pickled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from connectors.errors import EXIT_RUN_FAILED
from connectors.secrets import Secret, SecretError

T = TypeVar("T")

CURRENT, PREVIOUS, PENDING = "current", "previous", "pending"
STAGES = (CURRENT, PREVIOUS, PENDING)
LATEST = "latest"
"""A reference to the newest enabled version, whatever its stage."""

ENABLED, DISABLED, DESTROYED = "enabled", "disabled", "destroyed"

EXPIRY_KEY_PREFIX = "bw-expire-"
"""Per-version expiry is kept in the store's secret-level metadata under this prefix plus the
version id: no store has a per-version expiry field (Secret Manager's ``expire_time`` deletes
the whole secret), and annotations, tags and custom metadata exist in all of them."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class SecretNotFound(SecretError):
    """The provider does not hold this name, version or stage; a chain tries the next one."""


class SecretConflict(SecretError):
    """The store changed under us: another rotation holds ``pending``, moved ``current``, or
    the compare-and-set of a stage pointer failed. Nothing was changed by the refused call;
    the caller reports the conflict instead of overwriting someone else's rotation."""


class SecretUnavailable(SecretError):
    exit_code = EXIT_RUN_FAILED  # an outage, not a mistake in the input

    """The store could not be reached or did not answer in time.

    Distinct from :class:`SecretNotFound` because the right reaction differs: keep using the
    last-known-good value, and never fall through to a lower-priority provider that may hold
    a stale or unrelated value of the same name.
    """


def retry_conflicts(update: Callable[[], T], attempts: int = 5) -> T:
    """``update()`` again while it fails with :class:`SecretConflict`: for compare-and-set
    writes whose own precondition is re-checked inside ``update`` (a conflict then only means
    an unrelated field of the same document changed between the read and the write)."""
    for _ in range(attempts - 1):
        try:
            return update()
        except SecretConflict:
            continue
    return update()


def check_name(name: str) -> str:
    """``name`` if it is usable in every store (letters, digits, ``_.-``), else SecretError."""
    if not _NAME.match(name):
        raise SecretError(
            f"invalid secret name {name!r}: use letters, digits, '_', '.' or '-' "
            "(at most 255 characters, starting with a letter or digit)"
        )
    return name


def expiry_key(version: str) -> str:
    """The metadata key holding ``version``'s expiry time."""
    return f"{EXPIRY_KEY_PREFIX}{version}"


def expiries(metadata: Mapping[str, str]) -> dict[str, datetime]:
    """Version -> expiry time, read from secret-level metadata written with :func:`expiry_key`."""
    found = {}
    for key, value in metadata.items():
        if key.startswith(EXPIRY_KEY_PREFIX):
            found[key[len(EXPIRY_KEY_PREFIX) :]] = datetime.fromisoformat(value)
    return found


@dataclass(frozen=True)
class VersionInfo:
    """One version's metadata, never its value."""

    version: str
    state: str
    created: datetime | None = None
    expire_time: datetime | None = None
    stages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SecretInfo:
    """A secret's versions, stage pointers and annotations, as one store reports them."""

    name: str
    versions: tuple[VersionInfo, ...] = ()
    stages: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    expire_time: datetime | None = None
    """When the whole secret expires, where the store has such a thing (Secret Manager)."""

    def version(self, version: str | None) -> VersionInfo | None:
        """The metadata of ``version``, or None."""
        return next((v for v in self.versions if v.version == version), None)

    def at(self, stage: str) -> VersionInfo | None:
        """The version ``stage`` points at, or None."""
        return self.version(self.stages.get(stage))


@dataclass(frozen=True)
class StageView:
    """Which versions are ``current`` and ``previous`` right now: what the pipeline's side input
    carries. Version ids only, so it can be encoded, shuffled and checkpointed by any runner
    without a value ever leaving a worker's memory."""

    name: str
    current: str | None
    previous: str | None
    fetched_at: float


@dataclass(frozen=True)
class VersionedSecret:
    """A value, the version it came from, and when that version expires (if the store says):
    consumers refuse an expired value unless allowed, rather than serving it silently."""

    name: str
    version: str
    secret: Secret
    expire_time: datetime | None = None


class SecretSource(Protocol):
    """Read access: what consumers and the provider chain need."""

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        """The value of ``name`` at ``ref``: a stage, ``latest`` or a version id."""
        ...

    def stages(self, name: str) -> StageView:
        """The versions ``current`` and ``previous`` point at, without reading a value."""
        ...

    def close(self) -> None: ...


class RotatableStore(SecretSource, Protocol):
    """A store the rotation engine can write: versions, stage pointers, disabling."""

    def ensure(self, name: str) -> None:
        """Create the (empty) secret if the store needs it to exist before a version is added."""
        ...

    def describe(self, name: str) -> SecretInfo: ...

    def schedule_rotation(
        self, name: str, *, next_time: datetime, period: float, topics: Sequence[str]
    ) -> None:
        """Tell the store when rotations are due, where it has such a setting (Secret Manager's
        ``rotation`` and ``topics``, so it publishes ``SECRET_ROTATE``); elsewhere a no-op."""
        ...

    def add_version(
        self,
        name: str,
        secret: Secret,
        *,
        token: str,
        expire_time: datetime | None = None,
    ) -> str:
        """Store a new version and point ``pending`` at it, only if no other version is
        pending (compare-and-set); its version id. ``token`` names the rotation: stores that
        take a client token (AWS ``ClientRequestToken``) make a retry with it idempotent.
        Raises :class:`SecretConflict` when another version is pending."""
        ...

    def promote(self, name: str, version: str, *, expect_current: str | None = None) -> str | None:
        """In one compare-and-set: if ``pending`` is ``version`` and ``current`` is still
        ``expect_current``, ``version`` becomes current, the old current becomes previous and
        ``pending`` is cleared. Returns the version that became previous; raises
        :class:`SecretConflict` (and changes nothing) otherwise. The default ``None`` expects
        no current version, so a first promotion needs no argument and any later one must say
        which current it replaces."""
        ...

    def clear_stage(self, name: str, stage: str, version: str) -> bool:
        """Remove ``stage`` if it still points at ``version`` (compare-and-set); True if it did.
        A version is disabled only after this succeeded, so nobody can promote it meanwhile."""
        ...

    def disable(self, name: str, version: str) -> None:
        """Make ``version`` unreadable; refused with :class:`SecretConflict` if it is current."""
        ...

    def enable(self, name: str, version: str) -> None: ...

    def destroy(self, name: str, version: str) -> None: ...
