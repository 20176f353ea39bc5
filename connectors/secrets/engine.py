"""The rotation of one secret under one policy.

A rotation is: issue a new value, add it as ``pending``, verify it against the protected
system, promote it (``current`` -> ``previous``, ``pending`` -> ``current``, in one store
update), and schedule ``previous`` to be revoked and disabled when the overlap window ends.
If verification (or the promotion) fails, the rotation rolls back: ``current`` never moved,
``pending`` is cleared and disabled, and the unused value is revoked at its issuer.

Triggers: ``manual`` (rotate now), ``initial`` (a started policy whose secret has no current
version), ``scheduled`` (cron), ``proactive`` (current expires within the threshold) and
``reactive`` (a consumer reported current rejected, and a check of current confirms it: the
consumer's own refresh did not help). Every step is one audit line sharing a ``rotation_id``;
rotations, rollbacks and failures are notified. Values appear only as fingerprints.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.secrets import Secret, SecretError
from connectors.secrets.audit import AuditLog, scrub
from connectors.secrets.issuers import Issued, Issuer, build_issuer
from connectors.secrets.model import CURRENT, PENDING, PREVIOUS, RotatableStore, SecretNotFound
from connectors.secrets.notify import (
    FAILED,
    ROLLED_BACK,
    ROTATED,
    Notification,
    Notifier,
    build_notifier,
)
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.registry import open_store
from connectors.secrets.reporting import AuthFailure
from connectors.secrets.state import RuntimeState, locked
from connectors.secrets.verifiers import VerificationFailed, Verifier, build_verifier

MANUAL, INITIAL, SCHEDULED, PROACTIVE, REACTIVE = "manual", "initial", "scheduled", "proactive", "reactive"


@dataclass(frozen=True)
class RotationResult:
    """How one rotation ended: ``rotated``, ``rolled_back`` or ``failed``."""

    secret: str
    outcome: str
    trigger: str
    rotation_id: str
    version: str | None = None
    previous: str | None = None
    reason: str = ""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _error(exc: BaseException, *secrets: Secret | None) -> str:
    return scrub(f"{type(exc).__name__}: {exc}", secrets)


class RotationEngine:
    """Rotates ``policy.secret``; state and lock files live in ``state_dir``."""

    def __init__(
        self,
        policy: RotationPolicy,
        *,
        store: RotatableStore,
        audit: AuditLog,
        issuer: Issuer,
        verifier: Verifier | None,
        notifiers: Sequence[Notifier],
        state_dir: Path,
    ) -> None:
        self.policy = policy
        self.name = policy.secret
        self.store = store
        self.audit = audit
        self.issuer = issuer
        self.verifier = verifier
        self.notifiers = list(notifiers)
        self.state_path = Path(state_dir) / f"{policy.secret}.json"
        self.lock_path = Path(state_dir) / f"{policy.secret}.lock"

    @classmethod
    def build(cls, policy: RotationPolicy, *, audit: AuditLog, state_dir: Path) -> RotationEngine:
        """An engine with the store, issuer, verifier and notifiers the policy names."""
        return cls(
            policy,
            store=open_store(policy.store),
            audit=audit,
            issuer=build_issuer(policy.issuer),
            verifier=build_verifier(policy.verifier),
            notifiers=[build_notifier(n) for n in policy.notify],
            state_dir=state_dir,
        )

    def close(self) -> None:
        self.store.close()

    def state(self) -> RuntimeState:
        """A snapshot of the runtime state (for status)."""
        return RuntimeState.load(self.state_path)

    # ------------------------------------------------------------------ public operations

    def rotate(self, *, actor: str, trigger: str = MANUAL, reason: str = "") -> RotationResult:
        """Rotate now, whatever the schedule, backoff or expiry say."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            result = self._rotate(state, trigger=trigger, actor=actor, reason=reason)
            state.save(self.state_path)
            return result

    def bootstrap(self, *, actor: str) -> RotationResult | None:
        """Create the secret and its first version if it has no ``current`` yet; arm the schedule."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            if self.policy.schedule and state.next_run is None:
                state.next_run = self.policy.next_run(datetime.now(timezone.utc)).timestamp()
            result = None
            try:
                self.store.stages(self.name)
            except SecretNotFound:
                self.store.ensure(self.name)
                result = self._rotate(state, trigger=INITIAL, actor=actor, reason="no current version")
            state.save(self.state_path)
            return result

    def tick(self, *, actor: str, active: bool = True, now: float | None = None) -> list[RotationResult]:
        """Disable versions whose overlap ended; rotate if the schedule or expiry says so."""
        now = time.time() if now is None else now
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            self._retire(state, now, actor)
            results = []
            due = self._due(state, now, actor) if active else None
            if due is not None:
                results.append(self._rotate(state, trigger=due[0], actor=actor, reason=due[1]))
            state.save(self.state_path)
            return results

    def handle_auth_failure(self, failure: AuthFailure, *, actor: str) -> RotationResult | None:
        """A consumer says ``failure.version`` was rejected: rotate only if it is still current
        and a check of it fails too (a stale consumer just needs its next refresh)."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            result = self._reactive(state, failure, actor)
            state.save(self.state_path)
            return result

    # ------------------------------------------------------------------ steps

    def _log(self, **fields: Any) -> None:
        self.audit.record(secret=self.name, **fields)

    def _notify(self, note: Notification, actor: str) -> None:
        for notifier in self.notifiers:
            if note.event not in notifier.events:
                continue
            try:
                notifier.send(note)
            except Exception as exc:  # noqa: BLE001 - a notifier must never break a rotation
                outcome, detail = "failed", f"{notifier}: {_error(exc)}"
            else:
                outcome, detail = "sent", f"{notifier}: {note.event}"
            self._log(
                action="notify",
                outcome=outcome,
                actor=actor,
                version=note.version,
                trigger=note.trigger,
                rotation_id=note.rotation_id,
                detail=detail,
            )

    def _finish(
        self, state: RuntimeState, result: RotationResult, actor: str, fingerprint: str | None = None
    ) -> RotationResult:
        if result.outcome != "rotated":
            state.last_failure = time.time()
        event = {"rotated": ROTATED, "rolled_back": ROLLED_BACK}.get(result.outcome, FAILED)
        note = Notification(
            event=event,
            secret=self.name,
            trigger=result.trigger,
            rotation_id=result.rotation_id,
            reason=result.reason,
            time=_iso(time.time()),
            version=result.version,
            previous=result.previous,
            fingerprint=fingerprint,
        )
        self._notify(note, actor)
        return result

    def _check(self, issued: Issued) -> str | None:
        """Why the new value must not become current, or None."""
        if self.verifier is not None:
            try:
                self.verifier.verify(self.name, issued.secret)
            except VerificationFailed as exc:
                return scrub(str(exc), [issued.secret])
            except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check
                return f"verifier crashed: {_error(exc, issued.secret)}"
        threshold, expires = self.policy.expiry_threshold, issued.expire_time
        if threshold is not None and expires is not None and expires.timestamp() - time.time() <= threshold:
            return f"the new version expires at {expires.isoformat()}, within expiry_threshold"
        return None

    def _rotate(self, state: RuntimeState, *, trigger: str, actor: str, reason: str) -> RotationResult:
        rid = uuid.uuid4().hex[:12]

        def log(action: str, outcome: str, **more: Any) -> None:
            self._log(action=action, outcome=outcome, actor=actor, trigger=trigger, rotation_id=rid, **more)

        def failed(step: str, why: str, version: str | None = None) -> RotationResult:
            log(step, "failed", version=version, detail=why)
            return self._finish(state, RotationResult(self.name, "failed", trigger, rid, version, reason=why), actor)

        try:
            info = self.store.describe(self.name)
        except SecretError as exc:
            return failed("rotate", _error(exc))
        current = info.at(CURRENT)
        log("rotate", "started", version=current.version if current else None, detail=reason or None)
        stale = info.at(PENDING)
        if stale is not None:
            self._discard(stale.version, log)

        try:
            issued = self.issuer.issue(self.name)
        except Exception as exc:  # noqa: BLE001 - issuers are user code and remote systems
            return failed("generate", _error(exc))
        fingerprint = issued.secret.fingerprint
        log("generate", "ok", fingerprint=fingerprint)

        try:
            version = self.store.add_version(self.name, issued.secret, stage=PENDING, expire_time=issued.expire_time)
        except SecretError as exc:
            self._revoke(issued.secret, log)
            return failed("add_pending", _error(exc, issued.secret))
        log("add_pending", "ok", version=version, fingerprint=fingerprint)

        problem = self._check(issued)
        if problem is None:
            log("verify", "ok", version=version, fingerprint=fingerprint)
            try:
                previous = self.store.promote(self.name, version)
            except SecretError as exc:
                problem = f"promotion failed: {_error(exc)}"
        else:
            log("verify", "failed", version=version, fingerprint=fingerprint, detail=problem)
        if problem is not None:
            self._rollback(version, issued.secret, problem, log)
            result = RotationResult(self.name, "rolled_back", trigger, rid, version, reason=problem)
            return self._finish(state, result, actor, fingerprint)

        log("promote", "ok", version=version, fingerprint=fingerprint, detail=f"previous={previous}")
        now = time.time()
        if previous is not None:
            assert self.policy.overlap is not None  # resolved by the policy
            state.retiring[previous] = now + self.policy.overlap
            log(
                "schedule_disable",
                "scheduled",
                version=previous,
                detail=f"disable at {_iso(now + self.policy.overlap)} (overlap {self.policy.overlap:g}s)",
            )
        state.last_rotation = now
        state.last_failure = None
        why = reason or trigger
        result = RotationResult(self.name, "rotated", trigger, rid, version, previous, why)
        return self._finish(state, result, actor, fingerprint)

    def _revoke(self, secret: Secret, log: Any) -> None:
        try:
            self.issuer.revoke(self.name, secret)
        except Exception as exc:  # noqa: BLE001 - reported, the rotation goes on
            log("revoke", "failed", fingerprint=secret.fingerprint, detail=_error(exc, secret))

    def _rollback(self, version: str, secret: Secret, problem: str, log: Any) -> None:
        try:
            self.store.clear_stage(self.name, PENDING, version)
            self.store.disable(self.name, version)
        except SecretError as exc:
            problem = f"{problem}; cleanup failed: {_error(exc)}"
        self._revoke(secret, log)
        log("rollback", "rolled_back", version=version, fingerprint=secret.fingerprint, detail=problem)

    def _discard(self, version: str, log: Any) -> None:
        """A pending version left by an interrupted rotation: it was never verified."""
        try:
            leftover = self.store.access(self.name, version).secret
        except SecretError:
            leftover = None
        if leftover is not None:
            self._revoke(leftover, log)
        self.store.clear_stage(self.name, PENDING, version)
        self.store.disable(self.name, version)
        log("discard_pending", "ok", version=version, fingerprint=leftover.fingerprint if leftover else None)

    def _retire(self, state: RuntimeState, now: float, actor: str) -> None:
        for version, when in sorted(state.retiring.items(), key=lambda kv: kv[1]):
            if when > now:
                continue
            entry: dict[str, Any] = {"action": "disable_previous", "actor": actor, "version": version}
            try:
                if self.store.stages(self.name).current == version:
                    del state.retiring[version]
                    self._log(**entry, outcome="skipped", detail="the version is current again")
                    continue
                try:
                    old: Secret | None = self.store.access(self.name, version).secret
                except SecretError:
                    old = None  # already disabled elsewhere: nothing left to read
                if old is not None:
                    self.issuer.revoke(self.name, old)
                self.store.clear_stage(self.name, PREVIOUS, version)
                self.store.disable(self.name, version)
            except Exception as exc:  # noqa: BLE001 - retried after one refresh interval
                state.retiring[version] = now + self.policy.refresh_interval
                self._log(**entry, outcome="failed", detail=f"{_error(exc)}; retrying")
                continue
            del state.retiring[version]
            self._log(**entry, outcome="ok", fingerprint=old.fingerprint if old else None)

    def _due(self, state: RuntimeState, now: float, actor: str) -> tuple[str, str] | None:
        trigger = None
        if self.policy.schedule is not None:
            if state.next_run is None:
                state.next_run = self.policy.next_run(datetime.fromtimestamp(now, timezone.utc)).timestamp()
            elif now >= state.next_run:
                trigger = (SCHEDULED, f"cron {self.policy.schedule} at {_iso(state.next_run)}")
                state.next_run = self.policy.next_run(datetime.fromtimestamp(now, timezone.utc)).timestamp()
        if trigger is None and self.policy.expiry_threshold is not None:
            trigger = self._expiring(now)
        if trigger is not None and self._backing_off(state, now):
            self._log(action="rotate", outcome="skipped", actor=actor, trigger=trigger[0], detail="failure backoff")
            return None
        return trigger

    def _expiring(self, now: float) -> tuple[str, str] | None:
        try:
            current = self.store.describe(self.name).at(CURRENT)
        except SecretError:
            return None  # the store is unreachable: the next tick looks again
        if current is None or current.expire_time is None:
            return None
        left = current.expire_time.timestamp() - now
        assert self.policy.expiry_threshold is not None
        if left > self.policy.expiry_threshold:
            return None
        return PROACTIVE, f"version {current.version} expires at {current.expire_time.isoformat()}"

    def _backing_off(self, state: RuntimeState, now: float) -> bool:
        return state.last_failure is not None and now - state.last_failure < self.policy.failure_backoff

    def _reactive(self, state: RuntimeState, failure: AuthFailure, actor: str) -> RotationResult | None:
        entry = {"actor": failure.actor, "version": failure.version, "fingerprint": failure.fingerprint}
        self._log(action="auth_failure", outcome="reported", detail=failure.detail or None, **entry)

        def checked(outcome: str, detail: str) -> None:
            self._log(action="refresh_check", outcome=outcome, trigger=REACTIVE, detail=detail, **entry)

        if not self.policy.reactive:
            checked("ignored", "reactive rotation is off for this policy")
            return None
        try:
            current = self.store.access(self.name, CURRENT)
        except SecretError as exc:
            checked("failed", _error(exc))
            return None
        if current.version != failure.version:
            checked("stale", f"current is version {current.version}; the consumer's next refresh fixes it")
            return None
        if self.verifier is not None:
            try:
                self.verifier.verify(self.name, current.secret)
            except VerificationFailed as exc:
                problem = scrub(str(exc), [current.secret])
            except Exception as exc:  # noqa: BLE001 - a crashing check cannot confirm a failure
                checked("failed", f"verifier crashed: {_error(exc, current.secret)}")
                return None
            else:
                checked("current_valid", "the protected system accepts current; no rotation")
                return None
        else:
            problem = "no verifier configured; trusting the consumer's report"
        if self._backing_off(state, time.time()):
            checked("skipped", f"{problem}; failure backoff")
            return None
        checked("current_rejected", problem)
        return self._rotate(state, trigger=REACTIVE, actor=actor, reason=f"{failure.actor}: {problem}")
