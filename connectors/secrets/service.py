"""The rotation service: the Python API behind ``beamwright secrets start|status|rotate|audit|stop|run``.

Everything lives under one home directory (default ``$XDG_STATE_HOME/beamwright``; files
0600, directories 0700), so the CLI, a long-running ``run`` loop and a pipeline's failure
reports meet there without a server::

    <home>/policies/<name>.json   the registered policy and whether it is active
    <home>/state/<name>.json      the rotation in flight, overlap deadlines, the notification
                                  outbox, next scheduled run, last failure
    <home>/audit.jsonl            the audit log
    <home>/inbox.jsonl            consumers' signed authentication-failure reports
    <home>/report.key             the key those reports are signed with (workers only)

``tick`` does one round of work (drain reports, finish interrupted rotations, retire versions
whose overlap ended, rotate what is due, deliver queued notifications); ``run`` repeats it.
Stopping a policy stops new rotations but still disables the versions already scheduled, so no
demoted credential stays valid forever. ``start`` on a name that already has a different
policy is refused with the difference unless ``replace`` is given.
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

from connectors.secrets import FileSecret, SecretError
from connectors.secrets.audit import AuditLog, redact_urls, scrub, utc_now
from connectors.secrets.engine import FAILED_OUTCOME, RotationEngine, RotationResult
from connectors.secrets.model import CURRENT, PENDING, PREVIOUS, SecretNotFound, VersionInfo
from connectors.secrets.policy import PolicyError, RotationPolicy
from connectors.secrets.reporting import InboxReporter, read_inbox
from connectors.secrets.state import locked, write_private


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

    @property
    def expired(self) -> bool:
        """True when ``current`` has passed its expiry: consumers refuse it unless allowed."""
        return _expired(self.current)

    def to_json(self) -> dict[str, Any]:
        def version(v: VersionInfo | None) -> dict[str, Any] | None:
            if v is None:
                return None
            expiry = v.expire_time.isoformat() if v.expire_time else None
            created = v.created.isoformat() if v.created else None
            return {
                "version": v.version,
                "state": v.state,
                "created": created,
                "expire_time": expiry,
                "expired": _expired(v),
            }

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


def _expired(version: VersionInfo | None) -> bool:
    return bool(version and version.expire_time and version.expire_time <= datetime.now(timezone.utc))


def policy_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``field: old -> new`` for every field that differs (URL credentials redacted)."""
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            before = json.dumps(old.get(key), sort_keys=True)
            after = json.dumps(new.get(key), sort_keys=True)
            lines.append(redact_urls(f"{key}: {before} -> {after}"))
    return lines


class PolicyChange(PolicyError):
    """``start`` on a name whose registered policy differs; the message is the diff."""


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


class RotationService:
    """Policies, engines and the audit log under ``home``."""

    def __init__(self, home: str | Path, *, actor: str | None = None) -> None:
        self.home = Path(home)
        self.actor = actor or default_actor()
        self.audit = AuditLog(self.home / "audit.jsonl")
        self.inbox = self.home / "inbox.jsonl"
        self.report_key = FileSecret(str(self.home / "report.key"))
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
        write_private(self._record_path(name), json.dumps(record, indent=2, sort_keys=True))

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
        """Where consumers (pipeline workers) report rejected credentials, with the reference
        to the key they sign reports with (created 0600 on first use)."""
        self.report_key.create_if_missing()
        return InboxReporter(str(self.inbox), self.report_key)

    # ------------------------------------------------------------------ operations

    def start(
        self, policy: RotationPolicy, *, actor: str | None = None, replace: bool = False
    ) -> RotationResult | None:
        """Register ``policy`` and make sure its secret has a current version (finishing an
        interrupted rotation first). A different policy already registered under the name is
        replaced only with ``replace``; otherwise :class:`PolicyChange` lists the difference.
        Returns the initial (or resumed) rotation, if there was one."""
        actor = actor or self.actor
        try:
            registered = self._record(policy.secret)["policy"]
        except SecretError:
            registered = None
        changes = policy_diff(registered, policy.to_dict()) if registered is not None else []
        if changes and not replace:
            raise PolicyChange(
                f"secret {policy.secret!r} already has a different rotation policy; use --replace to apply:\n  "
                + "\n  ".join(changes)
            )
        self._write_record(policy.secret, {"policy": policy.to_dict(), "active": True, "since": utc_now()})
        self.audit.record(
            action="start",
            secret=policy.secret,
            outcome="ok",
            actor=actor,
            detail=f"store={policy.store['type']} overlap={policy.overlap:g}s schedule={policy.schedule} "
            f"expiry_threshold={policy.expiry_threshold} reactive={policy.reactive}"
            + (f"; replaced: {'; '.join(changes)}" if changes else ""),
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
        key = self.report_key.resolve().reveal() if Path(self.report_key.path).exists() else None
        for report in reports:
            if key is None or not report.authentic(key):
                refused = ("rejected", "unsigned or forged report (not signed with the report key)")
            elif report.secret not in known:
                refused = ("ignored", "no rotation policy for this secret")
            else:
                refused = None
            if refused is not None:
                self.audit.record(
                    action="auth_failure",
                    secret=report.secret,
                    outcome=refused[0],
                    actor=report.actor,
                    version=report.version,
                    fingerprint=report.fingerprint,
                    detail=refused[1],
                )
                continue
            result = self.engine(report.secret).handle_auth_failure(report, actor=self.actor)
            if result is not None:
                results.append(result)
        return results

    def tick(self) -> list[RotationResult]:
        """One round: reports, then every policy's resumes, disables and due rotations. A
        store that cannot be reached fails that secret's round (a ``failed`` result naming
        the store error), never the others'."""
        results = self.drain_reports()
        for name in self.names():
            active = bool(self._record(name)["active"])
            try:
                results.extend(self.engine(name).tick(actor=self.actor, active=active))
            except SecretError as exc:
                why = scrub(f"{type(exc).__name__}: {exc}")
                self.audit.record(action="tick", secret=name, outcome="failed", actor=self.actor, detail=why)
                results.append(RotationResult(name, FAILED_OUTCOME, "tick", "-", reason=why))
        return results

    def run(self, stop: threading.Event, *, interval: float = 1.0) -> None:
        """Tick every ``interval`` seconds until ``stop`` is set; a failing tick is audited and
        the loop goes on (a store outage must not end the service)."""
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep serving; the next tick retries
                self.audit.record(
                    action="tick", secret="*", outcome="failed", actor=self.actor, detail=f"{type(exc).__name__}: {exc}",
                )
            stop.wait(interval)

    def close(self) -> None:
        for _, engine in self._engines.values():
            engine.close()
        self._engines.clear()
