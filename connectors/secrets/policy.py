"""A rotation policy: which secret, in which store, when to rotate, and how safely.

The overlap rule is checked here, before anything runs: after a promotion a consumer may keep
using the old value for up to one refresh interval (it fetched just before the promotion),
the new value may take up to another interval to reach it (a side input's refresh, or a
failed refresh retried), and an element already being processed with the old value may run
for the longest bundle. Disabling ``previous`` any sooner than
``2 x refresh_interval + longest_bundle`` fails calls that were correct when they started.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from connectors.secrets import SecretError
from connectors.secrets.model import check_name

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class PolicyError(SecretError):
    """A policy that cannot work as written; the message says which field and why."""


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"250ms"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise PolicyError(f"not a duration: {value!r} (use e.g. 30s, 15m, 2h, 7d)")
    return float(match.group(1)) * _UNIT[match.group(2)]


_DURATIONS = (
    "refresh_interval",
    "longest_bundle",
    "overlap",
    "expiry_threshold",
    "failure_backoff",
    "min_interval",
    "rotation_timeout",
)


@dataclass(frozen=True)
class RotationPolicy:
    """Args:
    secret: the secret's name in ``store``.
    store: provider config of a rotatable store (``{"type": "gcp", ...}``).
    refresh_interval: how often consumers refresh (seconds); they must be configured alike.
    longest_bundle: the longest time a consumer keeps using a value it already read.
    overlap: how long ``previous`` stays valid after a promotion; defaults to the minimum,
        ``2 x refresh_interval + longest_bundle``, and may not be shorter.
    schedule: cron expression (5 fields, or 6 with seconds last) for scheduled rotations.
    expiry_threshold: rotate when ``current`` expires within this many seconds (proactive).
    reactive: rotate when a consumer reports ``current`` rejected and a check confirms it.
    issuer: how new values are made (see :func:`connectors.secrets.issuers.build_issuer`).
    verifier: the check a new value must pass (see :func:`~connectors.secrets.verifiers.build_verifier`).
    notify: notifier configs (see :func:`connectors.secrets.notify.build_notifier`).
    failure_backoff: after a failed rotation, automatic triggers wait this long.
    min_interval: at most one reactive rotation per this many seconds (default 10 min): a
        report is a request, and a flood of them must not turn into a flood of rotations.
    rotation_timeout: a ``pending`` version older than this whose rotation is not ours is
        taken for abandoned (its rotation service died) and discarded; younger, it belongs to a
        rotation in progress elsewhere and a new rotation reports a conflict instead.
    topics: Pub/Sub topics Secret Manager notifies (``projects/P/topics/T``); with a schedule,
        Secret Manager also gets ``rotation.next_rotation_time``/``rotation_period`` and
        publishes ``SECRET_ROTATE`` messages there.
    pseudonymization: the secret is a ``pseudonymize`` key: a rotation changes every pseudonym
        made with it, so such a policy must say how joins survive (``on_rotation``).
    on_rotation: ``rekey`` (before promoting, write an old -> new pseudonym map from the
        originals in ``rekey``) or ``fixed_version`` (older versions are never disabled:
        pipelines pin one in their spec). See :mod:`connectors.secrets.pseudonyms`.
    rekey: ``{originals: [{path|paths, field}], map_dir, length, key_id}`` for ``on_rotation:
        rekey``: the files holding the original values, where maps go, and the pseudonyms'
        ``length`` and ``key_id`` as the mask step makes them.
    """

    secret: str
    store: Mapping[str, Any]
    refresh_interval: float = 60.0
    longest_bundle: float = 60.0
    overlap: float | None = None
    schedule: str | None = None
    expiry_threshold: float | None = None
    reactive: bool = True
    issuer: Mapping[str, Any] = field(default_factory=lambda: {"type": "random"})
    verifier: Mapping[str, Any] | None = None
    notify: tuple[Mapping[str, Any], ...] = ()
    failure_backoff: float = 300.0
    min_interval: float = 600.0
    rotation_timeout: float = 900.0
    topics: tuple[str, ...] = ()
    pseudonymization: bool = False
    on_rotation: str | None = None
    rekey: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        check_name(self.secret)
        self._check_pseudonymization()
        if "type" not in self.store:
            raise PolicyError("store: a provider config needs a 'type'")
        if self.store["type"] == "env":
            raise PolicyError("store: environment variables are read-only; rotation needs a store")
        for name in _DURATIONS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise PolicyError(f"{name} must not be negative")
        if self.refresh_interval <= 0:
            raise PolicyError("refresh_interval must be positive")
        minimum = self.minimum_overlap
        if self.overlap is None:
            object.__setattr__(self, "overlap", minimum)
        elif self.overlap < minimum:
            raise PolicyError(
                f"overlap {self.overlap:g}s is shorter than 2 x refresh_interval + longest_bundle "
                f"= {minimum:g}s: consumers that have not refreshed yet would be cut off"
            )
        if self.schedule is not None:
            from croniter import croniter

            if not croniter.is_valid(self.schedule):
                raise PolicyError(f"schedule: not a cron expression: {self.schedule!r}")
        ttl = self.issuer.get("ttl")
        if ttl is not None and self.expiry_threshold is not None and float(ttl) <= self.expiry_threshold:
            raise PolicyError(
                f"issuer ttl {ttl}s is not longer than expiry_threshold {self.expiry_threshold:g}s: "
                "every new version would be due for rotation at once"
            )
        object.__setattr__(self, "notify", tuple(self.notify))
        object.__setattr__(self, "topics", tuple(self.topics))

    def _check_pseudonymization(self) -> None:
        """A pseudonymisation key rotates only with a way to keep pseudonyms joinable."""
        from connectors.errors import did_you_mean
        from connectors.secrets.pseudonyms import ON_ROTATION, REKEY, Originals

        where = f"policy {self.secret!r}"
        if not self.pseudonymization:
            if self.on_rotation is not None or self.rekey is not None:
                raise PolicyError(
                    "on_rotation/rekey apply to pseudonymisation keys only",
                    where=f"{where}: on_rotation",
                    hint="add 'pseudonymization: true' if this secret is a pseudonymize key",
                )
            return
        if self.on_rotation is None:
            raise PolicyError(
                "this secret is a pseudonymisation key: rotating it changes every pseudonym, and "
                "outputs written before the rotation would no longer join with those written after",
                where=f"{where}: on_rotation",
                hint="set 'on_rotation: rekey' (with rekey.originals and rekey.map_dir: an old -> new "
                "pseudonym map is written before the new key is promoted) or 'on_rotation: "
                "fixed_version' (older versions stay enabled; pin 'ref: <version>' in the spec)",
            )
        if self.on_rotation not in ON_ROTATION:
            raise PolicyError(
                f"unknown on_rotation {self.on_rotation!r}",
                where=f"{where}: on_rotation",
                hint=did_you_mean(self.on_rotation, ON_ROTATION),
            )
        if self.on_rotation == REKEY:
            rekey = dict(self.rekey or {})
            unknown = sorted(set(rekey) - {"originals", "map_dir", "length", "key_id"})
            if unknown or not rekey.get("originals") or not rekey.get("map_dir"):
                raise PolicyError(
                    "on_rotation: rekey needs rekey.originals (the files holding the original values) "
                    f"and rekey.map_dir{f'; unknown: {unknown}' if unknown else ''}",
                    where=f"{where}: rekey",
                    hint="e.g. rekey: {originals: [{path: data/customers-*.csv, field: email}], "
                    "map_dir: maps/}",
                )
            for entry in rekey["originals"]:
                Originals.from_dict(entry)

    @property
    def minimum_overlap(self) -> float:
        return 2 * self.refresh_interval + self.longest_bundle

    def next_run(self, after: datetime) -> datetime | None:
        """The first scheduled time strictly after ``after``, or None without a schedule."""
        if self.schedule is None:
            return None
        from croniter import croniter

        return croniter(self.schedule, after).get_next(datetime)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RotationPolicy:
        """A policy from plain data (a policy file, CLI flags); durations may be strings."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for name in _DURATIONS:
            if values.get(name) is not None:
                values[name] = parse_duration(values[name])
        values["notify"] = tuple(values.get("notify", ()))
        values["topics"] = tuple(values.get("topics", ()))
        try:
            return cls(**values)
        except TypeError as exc:
            raise PolicyError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["store"] = dict(self.store)
        data["issuer"] = dict(self.issuer)
        data["notify"] = [dict(n) for n in self.notify]
        data["topics"] = list(self.topics)
        if self.rekey is not None:
            data["rekey"] = dict(self.rekey)
        return data
