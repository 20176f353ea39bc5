"""The rotation service: the Python API behind ``beamwright secrets start|status|rotate|audit|stop|run``.

Everything lives under one home directory, so the CLI, a long-running ``run`` loop and a
pipeline's failure reports meet there without a server::

    <home>/policies/<name>.json   the registered policy and whether it is active
    <home>/state/<name>.json      overlap deadlines, next scheduled run, last failure
    <home>/audit.jsonl            the audit log
    <home>/inbox.jsonl            consumers' authentication-failure reports

``tick`` does one round of work (drain reports, retire versions whose overlap ended, rotate
what is due); ``run`` repeats it. Stopping a policy stops new rotations but still disables the
versions already scheduled, so no demoted credential stays valid forever.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.secrets import SecretError
from connectors.secrets.audit import AuditLog, utc_now
from connectors.secrets.engine import RotationEngine, RotationResult
from connectors.secrets.model import CURRENT, PENDING, PREVIOUS, SecretNotFound, VersionInfo
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.reporting import InboxReporter, read_inbox
from connectors.secrets.state import locked


def default_actor() -> str:
    """``user@host``, for audit lines written from this process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class SecretStatus:
    """One secret's policy and rotation state."""

    name: str
    active: bool
    policy: dict[str, Any]
    current: VersionInfo | None = None
    previous: VersionInfo | None = None
    pending: VersionInfo | None = None
    retiring: dict[str, str] = field(default_factory=dict)
    next_run: str | None = None
    last_rotation: str | None = None
    last_failure: str | None = None
    store_error: str | None = None
    secret_expire_time: str | None = None
    """When the store deletes the whole secret (Secret Manager's ``expire_time``), if set."""

    def to_json(self) -> dict[str, Any]:
        def version(v: VersionInfo | None) -> dict[str, Any] | None:
            if v is None:
                return None
            expiry = v.expire_time.isoformat() if v.expire_time else None
            created = v.created.isoformat() if v.created else None
            return {"version": v.version, "state": v.state, "created": created, "expire_time": expiry}

        return {
            "name": self.name,
            "active": self.active,
            "current": version(self.current),
            "previous": version(self.previous),
            "pending": version(self.pending),
            "retiring": self.retiring,
            "next_run": self.next_run,
            "last_rotation": self.last_rotation,
            "last_failure": self.last_failure,
            "store_error": self.store_error,
            "secret_expire_time": self.secret_expire_time,
            "policy": self.policy,
        }


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


class RotationService:
    """Policies, engines and the audit log under ``home``."""

    def __init__(self, home: str | Path, *, actor: str | None = None) -> None:
        self.home = Path(home)
        self.actor = actor or default_actor()
        self.audit = AuditLog(self.home / "audit.jsonl")
        self.inbox = self.home / "inbox.jsonl"
        self._policies = self.home / "policies"
        self._state = self.home / "state"
        self._engines: dict[str, tuple[RotationPolicy, RotationEngine]] = {}
        self._engines_lock = threading.Lock()  # the run loop and API calls share engines

    # ------------------------------------------------------------------ registry

    def _record_path(self, name: str) -> Path:
        return self._policies / f"{name}.json"

    def _record(self, name: str) -> dict[str, Any]:
        try:
            return json.loads(self._record_path(name).read_text())
        except FileNotFoundError:
            raise SecretError(f"no rotation policy for secret {name!r}; start one first") from None

    def _write_record(self, name: str, record: dict[str, Any]) -> None:
        self._policies.mkdir(parents=True, exist_ok=True)
        path = self._record_path(name)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True))
        os.replace(tmp, path)

    def names(self) -> list[str]:
        """Every secret with a registered policy, active or stopped."""
        return sorted(p.stem for p in self._policies.glob("*.json")) if self._policies.is_dir() else []

    def policy(self, name: str) -> RotationPolicy:
        return RotationPolicy.from_dict(self._record(name)["policy"])

    def engine(self, name: str) -> RotationEngine:
        """The engine for ``name``'s registered policy (rebuilt if the policy changed)."""
        policy = self.policy(name)
        with self._engines_lock:
            cached = self._engines.get(name)
            if cached is not None and cached[0] == policy:
                return cached[1]
            if cached is not None:
                cached[1].close()
            engine = RotationEngine.build(policy, audit=self.audit, state_dir=self._state)
            self._engines[name] = (policy, engine)
            return engine

    def reporter(self) -> InboxReporter:
        """Where consumers (pipeline workers) report rejected credentials."""
        return InboxReporter(str(self.inbox))

    # ------------------------------------------------------------------ operations

    def start(self, policy: RotationPolicy, *, actor: str | None = None) -> RotationResult | None:
        """Register (or replace) ``policy`` and make sure its secret has a current version.
        Returns the initial rotation, if one was needed."""
        actor = actor or self.actor
        self._write_record(policy.secret, {"policy": policy.to_dict(), "active": True, "since": utc_now()})
        self.audit.record(
            action="start",
            secret=policy.secret,
            outcome="ok",
            actor=actor,
            detail=f"store={policy.store['type']} overlap={policy.overlap:g}s schedule={policy.schedule} "
            f"expiry_threshold={policy.expiry_threshold} reactive={policy.reactive}",
        )
        return self.engine(policy.secret).bootstrap(actor=actor)

    def stop(self, name: str, *, actor: str | None = None) -> None:
        """No more rotations for ``name``; scheduled disables still happen."""
        record = self._record(name)
        record.update(active=False, since=utc_now())
        self._write_record(name, record)
        self.audit.record(action="stop", secret=name, outcome="ok", actor=actor or self.actor)

    def rotate(self, name: str, *, actor: str | None = None, reason: str = "") -> RotationResult:
        """Rotate ``name`` now (a stopped policy may still be rotated by hand)."""
        return self.engine(name).rotate(actor=actor or self.actor, reason=reason)

    def status(self, name: str | None = None) -> list[SecretStatus]:
        """State of ``name``, or of every registered secret."""
        statuses = []
        for secret in [name] if name else self.names():
            record = self._record(secret)
            engine = self.engine(secret)
            state = engine.state()
            found: dict[str, VersionInfo | None] = {}
            error = expires = None
            try:
                info = engine.store.describe(secret)
                found = {s: info.at(s) for s in (CURRENT, PREVIOUS, PENDING)}
                expires = info.expire_time.isoformat() if info.expire_time else None
            except SecretNotFound:
                error = "the secret does not exist in the store yet"
            except SecretError as exc:
                error = str(exc)
            statuses.append(
                SecretStatus(
                    name=secret,
                    active=record["active"],
                    policy=record["policy"],
                    current=found.get(CURRENT),
                    previous=found.get(PREVIOUS),
                    pending=found.get(PENDING),
                    retiring={v: _iso(t) or "" for v, t in state.retiring.items()},
                    next_run=_iso(state.next_run) if record["active"] else None,
                    last_rotation=_iso(state.last_rotation),
                    last_failure=_iso(state.last_failure),
                    store_error=error,
                    secret_expire_time=expires,
                )
            )
        return statuses

    def audit_log(
        self, name: str | None = None, *, since: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        return self.audit.read(name, since=since, limit=limit)

    def drain_reports(self) -> list[RotationResult]:
        """Handle every authentication-failure report consumers appended since the last call."""
        offset_path = self._state / "inbox.offset"
        results = []
        with locked(self._state / "inbox.lock"):
            offset = int(offset_path.read_text()) if offset_path.exists() else 0
            reports, offset = read_inbox(self.inbox, offset)
            offset_path.write_text(str(offset))
        known = set(self.names())
        for report in reports:
            if report.secret not in known:
                self.audit.record(
                    action="auth_failure",
                    secret=report.secret,
                    outcome="ignored",
                    actor=report.actor,
                    version=report.version,
                    fingerprint=report.fingerprint,
                    detail="no rotation policy for this secret",
                )
                continue
            result = self.engine(report.secret).handle_auth_failure(report, actor=self.actor)
            if result is not None:
                results.append(result)
        return results

    def tick(self) -> list[RotationResult]:
        """One round: reports, then every policy's disables and due rotations."""
        results = self.drain_reports()
        for name in self.names():
            active = bool(self._record(name)["active"])
            results.extend(self.engine(name).tick(actor=self.actor, active=active))
        return results

    def run(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; a failing tick is audited and
        the loop goes on (a store outage must not end the service)."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next tick retries
                self.audit.record(
                    action="tick", secret="*", outcome="failed", actor=self.actor, detail=f"{type(exc).__name__}: {exc}"
                )
            stop.wait(interval)

    def close(self) -> None:
        for _, engine in self._engines.values():
            engine.close()
        self._engines.clear()
