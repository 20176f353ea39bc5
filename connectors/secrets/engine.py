"""The rotation of one secret under one policy, as resumable steps.

A rotation follows AWS Secrets Manager's rotation contract (createSecret / setSecret /
testSecret / finishSecret) under one *token* that names it:

1. ``create``: the token, trigger and the ``current`` the rotation starts from are recorded;
   a new value is issued (its fingerprint recorded) and stored as ``pending``, which the store
   grants only if no other version is pending (compare-and-set): ``pending`` is the rotation's
   claim on the secret.
2. ``created`` -> verify the value against the protected system.
3. ``verified`` -> promote: one compare-and-set that succeeds only if ``pending`` is still our
   version and ``current`` is still the one we started from, so two rotation services on one
   store can never both promote, nor promote a version someone else discarded.
4. ``promoted``: in one state write, ``previous`` is scheduled to be revoked and disabled when
   the overlap window ends, the notifications are queued in the outbox and the rotation is
   closed; only then are notifications delivered (and retried from the outbox until they are).

Each step is recorded in the state file *before* its side effect, so a process killed at any
point leaves a record the next ``run``/``rotate``/``start`` resumes from: an unverified
version is verified (or found by its fingerprint and discarded, if the crash came before its
id was recorded), a verified one promoted, a promoted one finished. If verification or the
promotion fails, the rotation rolls back: ``current`` never moved, ``pending`` is cleared (only
while it still names our version), the version disabled and destroyed, the value revoked at
its issuer. A version is disabled only after a compare-and-set took every pointer off it, so
nobody can promote it meanwhile. Outcomes: ``rotated``, ``rolled_back``, ``conflict`` (another
rotation holds the secret or moved ``current``; nothing of theirs was touched) or ``failed``.

Triggers: ``manual``, ``initial`` (a started policy whose secret has no current version),
``scheduled`` (cron), ``proactive`` (current expires within the threshold) and ``reactive``
(an authenticated consumer report whose fingerprint matches the version in use, confirmed by a
check of current, at most once per ``min_interval``). Every step is one audit line sharing the
rotation token as ``rotation_id``; values appear only as fingerprints, and every error text
goes through :func:`connectors.secrets.audit.scrub` with every value this engine has touched.

For the crash-matrix tests, ``BEAMWRIGHT_SECRETS_CRASH_AT=<step>`` makes the process SIGKILL
itself at that step (``added``, ``created``, ``verified``, ``promoted``, ``notify``, ``disable``):
a real process death, which no ``finally`` block or exception handler can soften.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connectors.secrets import Secret, SecretError
from connectors.secrets.audit import AuditLog, scrub
from connectors.secrets.issuers import Issuer, build_issuer
from connectors.secrets.model import (
    CURRENT,
    ENABLED,
    PENDING,
    PREVIOUS,
    RotatableStore,
    SecretConflict,
    SecretInfo,
    SecretNotFound,
    VersionInfo,
)
from connectors.secrets.notify import (
    FAILED,
    ROLLED_BACK,
    ROTATED,
    Notification,
    Notifier,
    build_notifier,
)
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.pseudonyms import FIXED_VERSION, REKEY, Originals, key_id, write_rekey_map
from connectors.secrets.registry import open_store
from connectors.secrets.reporting import AuthFailure
from connectors.secrets.state import RuntimeState, locked
from connectors.secrets.verifiers import VerificationFailed, Verifier, build_verifier

MANUAL, INITIAL, SCHEDULED, PROACTIVE, REACTIVE = "manual", "initial", "scheduled", "proactive", "reactive"
RETIRE = "retire"
ROTATED_OUTCOME, ROLLED_BACK_OUTCOME, CONFLICT, FAILED_OUTCOME = "rotated", "rolled_back", "conflict", "failed"
CRASH_ENV = "BEAMWRIGHT_SECRETS_CRASH_AT"
VALUES_KEPT = 32
MAX_DELIVERIES = 20
"""Attempts per notification and notifier before the outbox gives up (and audits it)."""


@dataclass(frozen=True)
class RotationResult:
    """How one rotation ended: ``rotated``, ``rolled_back``, ``conflict`` or ``failed``."""

    secret: str
    outcome: str
    trigger: str
    rotation_id: str
    version: str | None = None
    previous: str | None = None
    reason: str = ""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


def _newer(version: VersionInfo, current: VersionInfo | None) -> bool:
    """True if ``version`` may have been created after ``current`` (so it was never promoted)."""
    if current is None or version.created is None or current.created is None:
        return True
    return version.created >= current.created


def crash_point(step: str) -> None:
    """Die here, for real, if the crash-matrix hook names ``step``."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


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
        # the values touched lately, scrubbed from every error text; bounded, so a long-running
        # service does not keep every value it ever rotated in memory
        self._values: deque[Secret] = deque(maxlen=VALUES_KEPT)

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
        """Rotate now, whatever the schedule, backoff or expiry say (after finishing a rotation
        an earlier process left half done)."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            self._resume(state, actor)
            result = self._rotate(state, trigger=trigger, actor=actor, reason=reason)
            self._deliver(state, actor)
            return result

    def bootstrap(self, *, actor: str) -> RotationResult | None:
        """Create the secret and its first version if it has no ``current`` yet; arm the schedule."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            result = self._resume(state, actor)
            if self.policy.schedule and state.next_run is None:
                state.next_run = self.policy.next_run(datetime.now(timezone.utc)).timestamp()
                state.save(self.state_path)
            try:
                self.store.stages(self.name)
            except SecretNotFound:
                self.store.ensure(self.name)
                result = self._rotate(state, trigger=INITIAL, actor=actor, reason="no current version")
            if self.policy.schedule:
                first = self.policy.next_run(datetime.now(timezone.utc))
                period = (self.policy.next_run(first) - first).total_seconds()
                self.store.schedule_rotation(self.name, next_time=first, period=period, topics=self.policy.topics)
            self._deliver(state, actor)
            return result

    def tick(self, *, actor: str, active: bool = True, now: float | None = None) -> list[RotationResult]:
        """Finish an interrupted rotation, retire versions whose overlap ended, rotate if the
        schedule or expiry says so, deliver queued notifications."""
        now = time.time() if now is None else now
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            resumed = self._resume(state, actor)
            results = [resumed] if resumed is not None else []
            results += self._retire(state, now, actor)
            due = self._due(state, now, actor) if active else None
            if due is not None:
                results.append(self._rotate(state, trigger=due[0], actor=actor, reason=due[1]))
            self._deliver(state, actor)
            return results

    def handle_auth_failure(self, failure: AuthFailure, *, actor: str) -> RotationResult | None:
        """A consumer says ``failure.version`` was rejected: rotate only if it is still current,
        the report's fingerprint is that version's, a check of it fails too, and no reactive
        rotation happened within ``min_interval``."""
        with locked(self.lock_path):
            state = RuntimeState.load(self.state_path)
            self._resume(state, actor)
            result = self._reactive(state, failure, actor)
            self._deliver(state, actor)
            return result

    # ------------------------------------------------------------------ plumbing

    def _log(self, **fields: Any) -> None:
        self.audit.record(secret=self.name, **fields)

    def _redact(self, text: str) -> str:
        return scrub(text, self._values)

    def _error(self, exc: BaseException) -> str:
        return self._redact(f"{type(exc).__name__}: {exc}")

    def _seen(self, secret: Secret) -> Secret:
        self._values.append(secret)
        return secret

    def _checkpoint(self, state: RuntimeState, step: str) -> None:
        state.save(self.state_path)
        crash_point(step)

    def _queue(self, state: RuntimeState, result: RotationResult, fingerprint: str | None = None) -> None:
        event = {ROTATED_OUTCOME: ROTATED, ROLLED_BACK_OUTCOME: ROLLED_BACK}.get(result.outcome, FAILED)
        note = Notification(
            event=event,
            secret=self.name,
            trigger=result.trigger,
            rotation_id=result.rotation_id,
            reason=self._redact(result.reason),
            time=_iso(time.time()),
            version=result.version,
            previous=result.previous,
            fingerprint=fingerprint,
        )
        state.outbox.append({"note": asdict(note), "delivered": [], "attempts": 0})

    def _deliver(self, state: RuntimeState, actor: str) -> None:
        """Send what the outbox holds; each delivery is recorded before the next, so a crash
        resends at most the one in flight (receivers recognise it by ``rotation_id`` + ``event``)."""
        for item in list(state.outbox):
            note = Notification(**item["note"])
            item["attempts"] += 1
            for index, notifier in enumerate(self.notifiers):
                if note.event not in notifier.events or index in item["delivered"]:
                    continue
                crash_point("notify")
                try:
                    notifier.send(note)
                except Exception as exc:  # noqa: BLE001 - a notifier must never break a rotation
                    outcome, detail = "failed", f"{notifier}: {self._error(exc)}"
                else:
                    outcome, detail = "sent", f"{notifier}: {note.event}"
                    item["delivered"].append(index)
                self._log(
                    action="notify",
                    outcome=outcome,
                    actor=actor,
                    version=note.version,
                    trigger=note.trigger,
                    rotation_id=note.rotation_id,
                    detail=detail,
                )
                state.save(self.state_path)
            wanted = {i for i, n in enumerate(self.notifiers) if note.event in n.events}
            if wanted <= set(item["delivered"]) or item["attempts"] >= MAX_DELIVERIES:
                if not wanted <= set(item["delivered"]):
                    self._log(action="notify", outcome="abandoned", actor=actor, rotation_id=note.rotation_id,
                              detail=f"not delivered after {MAX_DELIVERIES} attempts")
                state.outbox.remove(item)
            state.save(self.state_path)

    def _finish(self, state: RuntimeState, result: RotationResult, fingerprint: str | None = None) -> RotationResult:
        """Close the rotation: queue its notification and make the state durable, in one write."""
        state.rotation = None
        if result.outcome != ROTATED_OUTCOME:
            state.last_failure = time.time()
        self._queue(state, result, fingerprint)
        state.save(self.state_path)
        return result

    # ------------------------------------------------------------------ a rotation

    def _rotate(self, state: RuntimeState, *, trigger: str, actor: str, reason: str) -> RotationResult:
        token = uuid.uuid4().hex
        record: dict[str, Any] = {"token": token, "step": "create", "trigger": trigger, "reason": reason, "actor": actor}

        def log(action: str, outcome: str, **more: Any) -> None:
            self._log(action=action, outcome=outcome, actor=actor, trigger=trigger, rotation_id=token, **more)

        def failed(step: str, why: str, outcome: str = FAILED_OUTCOME, version: str | None = None) -> RotationResult:
            log(step, outcome, version=version, detail=why)
            return self._finish(state, RotationResult(self.name, outcome, trigger, token, version, reason=why))

        try:
            info = self.store.describe(self.name)
        except SecretNotFound:
            info = SecretInfo(self.name)  # Vault creates a secret with its first version
        except SecretError as exc:
            return failed("rotate", self._error(exc))
        current = info.at(CURRENT)
        log("rotate", "started", version=current.version if current else None, detail=reason or None)
        pending = info.at(PENDING)
        if pending is not None and pending.version != (current.version if current else None):
            if not self._abandoned(pending.created):
                return failed("rotate", f"version {pending.version} is pending: another rotation is in progress", CONFLICT)
            self._discard(pending.version, None, "abandoned by an earlier rotation", log)

        record["expect_current"] = current.version if current else None
        state.rotation = record
        state.save(self.state_path)
        try:
            issued = self.issuer.issue(self.name)
        except Exception as exc:  # noqa: BLE001 - issuers are user code and remote systems
            return failed("generate", self._error(exc))
        secret = self._seen(issued.secret)
        record["fingerprint"] = secret.fingerprint
        state.save(self.state_path)
        log("generate", "ok", fingerprint=secret.fingerprint)

        try:
            version = self.store.add_version(self.name, secret, token=token, expire_time=issued.expire_time)
        except SecretError as exc:
            self._revoke(secret, log)
            outcome = CONFLICT if isinstance(exc, SecretConflict) else FAILED_OUTCOME
            return failed("add_pending", self._error(exc), outcome)
        crash_point("added")  # stored, but its id not yet recorded: resume finds it by fingerprint
        record.update(version=version, step="created")
        log("add_pending", "ok", version=version, fingerprint=secret.fingerprint)
        self._checkpoint(state, "created")
        return self._advance(state, secret, issued.expire_time, log)

    def _abandoned(self, created: datetime | None) -> bool:
        return created is not None and time.time() - created.timestamp() > self.policy.rotation_timeout

    def _advance(self, state: RuntimeState, secret: Secret, expires: datetime | None, log: Any) -> RotationResult:
        """Verify (if not yet), promote, finish: the steps after ``created``, also on resume."""
        record = state.rotation
        assert record is not None
        token, version, trigger = record["token"], record["version"], record["trigger"]
        if record["step"] == "created":
            problem = self._check(secret, expires) or self._rekey(secret, record, log)
            if problem is not None:
                log("verify", "failed", version=version, fingerprint=secret.fingerprint, detail=problem)
                return self._roll_back(state, secret, problem, ROLLED_BACK_OUTCOME, log)
            record["step"] = "verified"
            log("verify", "ok", version=version, fingerprint=secret.fingerprint)
            self._checkpoint(state, "verified")
        try:
            previous = self._promote(version, record["expect_current"])
            crash_point("promoted")  # promoted in the store, not yet in the state: resume redoes it
        except SecretConflict as exc:
            return self._roll_back(state, secret, f"promotion refused: {self._error(exc)}", CONFLICT, log)
        except SecretError as exc:
            return self._roll_back(state, secret, f"promotion failed: {self._error(exc)}", ROLLED_BACK_OUTCOME, log)
        log("promote", "ok", version=version, fingerprint=secret.fingerprint, detail=f"previous={previous}")
        now = time.time()
        if previous is not None and self.policy.on_rotation == FIXED_VERSION:
            log("keep_previous", "ok", version=previous, detail="fixed_version: pipelines may pin it")
        elif previous is not None:
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
        why = record["reason"] or trigger
        result = RotationResult(self.name, ROTATED_OUTCOME, trigger, token, version, previous, why)
        return self._finish(state, result, secret.fingerprint)

    def _promote(self, version: str, expect_current: str | None) -> str | None:
        """The store's compare-and-set promotion; idempotent when a crash came right after it
        (``current`` is already ours and ``pending`` gone)."""
        info = self.store.describe(self.name)
        if info.stages.get(CURRENT) == version and info.stages.get(PENDING) != version:
            return expect_current
        return self.store.promote(self.name, version, expect_current=expect_current)

    def _check(self, secret: Secret, expires: datetime | None) -> str | None:
        """Why the new value must not become current, or None."""
        if self.verifier is not None:
            try:
                self.verifier.verify(self.name, secret)
            except VerificationFailed as exc:
                return self._redact(str(exc))
            except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check
                return f"verifier crashed: {self._error(exc)}"
        threshold = self.policy.expiry_threshold
        if threshold is not None and expires is not None and expires.timestamp() - time.time() <= threshold:
            return f"the new version expires at {expires.isoformat()}, within expiry_threshold"
        return None

    def _rekey(self, secret: Secret, record: dict[str, Any], log: Any) -> str | None:
        """``on_rotation: rekey``: write the old -> new pseudonym map before the new key can be
        promoted (see :mod:`connectors.secrets.pseudonyms`); why it failed, or None."""
        old_version = record["expect_current"]
        if self.policy.on_rotation != REKEY or old_version is None:
            return None
        rekey = self.policy.rekey or {}
        path = Path(rekey["map_dir"]) / f"{self.name}-{old_version}-to-{record['version']}.csv"
        try:
            old = self._seen(self.store.access(self.name, old_version).secret)
            originals = [Originals.from_dict(entry) for entry in rekey["originals"]]
            ids = (key_id(old_version), key_id(record["version"])) if rekey.get("key_id") else ("", "")
            rows = write_rekey_map(originals, old, secret, path, length=rekey.get("length"), prefixes=ids)
        except SecretError as exc:
            return f"rekey map not written: {self._error(exc)}"
        except OSError as exc:
            return f"rekey map not written: {path}: {exc.strerror}"
        log("rekey_map", "ok", version=record["version"], detail=f"{rows} rows -> {path}")
        return None

    def _roll_back(self, state: RuntimeState, secret: Secret, problem: str, outcome: str, log: Any) -> RotationResult:
        record = state.rotation
        assert record is not None
        self._discard(record["version"], secret, problem, log, action="rollback", outcome=outcome)
        result = RotationResult(self.name, outcome, record["trigger"], record["token"], record["version"], reason=problem)
        return self._finish(state, result, secret.fingerprint)

    def _discard(
        self,
        version: str,
        secret: Secret | None,
        why: str,
        log: Any,
        *,
        action: str = "discard_pending",
        outcome: str = "ok",
    ) -> None:
        """Take ``pending`` off a version that was never promoted (compare-and-set), then
        disable and destroy it and revoke its value. If the pointer had already moved, the
        version belongs to whoever moved it and is left alone."""
        if secret is None:
            try:
                secret = self._seen(self.store.access(self.name, version).secret)
            except SecretError:
                secret = None
        try:
            cleared = self.store.clear_stage(self.name, PENDING, version)
            info = self.store.describe(self.name)
            if cleared or (info.stages.get(CURRENT) != version and version not in info.stages.values()):
                self.store.disable(self.name, version)
                self._destroy(version)
                if secret is not None:
                    self._revoke(secret, log)
            else:
                why = f"{why}; version {version} moved on meanwhile and was left alone"
        except SecretError as exc:
            why = f"{why}; cleanup failed: {self._error(exc)}"
        log(action, outcome, version=version, fingerprint=secret.fingerprint if secret else None, detail=why)

    def _destroy(self, version: str) -> None:
        """A never-promoted value has no use: destroy it where the store can (AWS cannot; its
        label-less versions are deprecated and deleted by AWS)."""
        with contextlib.suppress(SecretError):
            self.store.destroy(self.name, version)

    def _revoke(self, secret: Secret, log: Any) -> bool:
        try:
            self.issuer.revoke(self.name, secret)
        except Exception as exc:  # noqa: BLE001 - reported, the rotation goes on
            log("revoke", "failed", fingerprint=secret.fingerprint, detail=self._error(exc))
            return False
        return True

    # ------------------------------------------------------------------ resuming

    def _resume(self, state: RuntimeState, actor: str) -> RotationResult | None:
        """Finish (or cleanly roll back) the rotation an interrupted process left in the state."""
        record = state.rotation
        if record is None:
            return None
        token, trigger = record["token"], record["trigger"]

        def log(action: str, outcome: str, **more: Any) -> None:
            self._log(action=action, outcome=outcome, actor=actor, trigger=trigger, rotation_id=token, **more)

        log("resume", "started", version=record.get("version"), detail=f"interrupted at step {record['step']}")
        version = record.get("version")
        try:
            info = self.store.describe(self.name)
            if version is None:
                return self._resume_create(state, info, log)
            if version not in (info.stages.get(PENDING), info.stages.get(CURRENT)):
                why = f"version {version} was discarded by another rotation meanwhile"
                log("resume", CONFLICT, version=version, detail=why)
                return self._finish(state, RotationResult(self.name, CONFLICT, trigger, token, version, reason=why))
            secret = self._seen(self.store.access(self.name, version).secret)
        except SecretNotFound:
            why = "the interrupted rotation left nothing in the store"
            log("resume", ROLLED_BACK_OUTCOME, detail=why)
            return self._finish(state, RotationResult(self.name, ROLLED_BACK_OUTCOME, trigger, token, reason=why))
        except SecretError as exc:
            why = f"cannot resume yet: {self._error(exc)}"
            log("resume", FAILED_OUTCOME, detail=why)
            return RotationResult(self.name, FAILED_OUTCOME, trigger, token, version, reason=why)
        found = info.version(version)
        return self._advance(state, secret, found.expire_time if found else None, log)

    def _resume_create(self, state: RuntimeState, info: SecretInfo, log: Any) -> RotationResult:
        """Killed between issuing a value and recording its version: find the version by the
        recorded fingerprint (only ours can match) and discard it; it was never verified."""
        record = state.rotation
        assert record is not None
        fingerprint = record.get("fingerprint")
        current = info.at(CURRENT)
        found = None
        if fingerprint is not None:
            for candidate in info.versions:
                if candidate.state != ENABLED or candidate.stages - {PENDING} or not _newer(candidate, current):
                    continue
                try:
                    value = self.store.access(self.name, candidate.version).secret
                except SecretError:
                    continue
                if value.fingerprint == fingerprint:
                    found = candidate.version
                    self._discard(found, self._seen(value), "interrupted before its version was recorded", log)
                    break
        why = "interrupted while creating the new version; rolled back"
        result = RotationResult(self.name, ROLLED_BACK_OUTCOME, record["trigger"], record["token"], found, reason=why)
        return self._finish(state, result, fingerprint)

    # ------------------------------------------------------------------ retiring

    def _retire(self, state: RuntimeState, now: float, actor: str) -> list[RotationResult]:
        """Revoke and disable each version whose overlap ended: ``previous`` is taken off it,
        the value revoked at its issuer, then the version disabled. A failure keeps the version
        on the list (retried every refresh interval), is notified once, and is returned as a
        ``failed`` result so ``run --once`` exits non-zero. While revocation fails the version
        stays enabled but unstaged: disabling it would destroy the only copy of the value the
        issuer needs to revoke it, leaving it valid there for good."""
        failures = []
        for version, when in sorted(state.retiring.items(), key=lambda kv: kv[1]):
            if when > now:
                continue
            entry: dict[str, Any] = {"action": "disable_previous", "actor": actor, "version": version}
            old: Secret | None = None
            try:
                stages = self.store.describe(self.name).stages
                if stages.get(CURRENT) == version:
                    del state.retiring[version]
                    state.save(self.state_path)
                    self._log(**entry, outcome="skipped", detail="the version is current again")
                    continue
                try:
                    old = self._seen(self.store.access(self.name, version).secret)
                except SecretError:
                    old = None  # already disabled (after its revocation) by an earlier attempt
                self.store.clear_stage(self.name, PREVIOUS, version)  # consumers stop falling back to it
                if old is not None:
                    self.issuer.revoke(self.name, old)
                crash_point("disable")
                self.store.disable(self.name, version)
            except Exception as exc:  # noqa: BLE001 - retried after one refresh interval
                why = f"{self._error(exc)}; retrying"
                state.retiring[version] = now + self.policy.refresh_interval
                self._log(**entry, outcome="failed", fingerprint=old.fingerprint if old else None, detail=why)
                result = RotationResult(self.name, FAILED_OUTCOME, RETIRE, f"retire-{version}", version, reason=why)
                if version not in state.alerted:
                    state.alerted.append(version)
                    self._queue(state, result, old.fingerprint if old else None)
                state.save(self.state_path)
                failures.append(result)
                continue
            del state.retiring[version]
            if version in state.alerted:
                state.alerted.remove(version)
            state.save(self.state_path)
            self._log(**entry, outcome="ok", fingerprint=old.fingerprint if old else None)
        return failures

    # ------------------------------------------------------------------ triggers

    def _due(self, state: RuntimeState, now: float, actor: str) -> tuple[str, str] | None:
        trigger = None
        if self.policy.schedule is not None:
            if state.next_run is None:
                state.next_run = self.policy.next_run(datetime.fromtimestamp(now, timezone.utc)).timestamp()
            elif now >= state.next_run:
                trigger = (SCHEDULED, f"cron {self.policy.schedule} at {_iso(state.next_run)}")
                state.next_run = self.policy.next_run(datetime.fromtimestamp(now, timezone.utc)).timestamp()
            state.save(self.state_path)
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
        self._log(action="auth_failure", outcome="reported", detail=self._redact(failure.detail) or None, **entry)

        def checked(outcome: str, detail: str) -> None:
            self._log(action="refresh_check", outcome=outcome, trigger=REACTIVE, detail=detail, **entry)

        if not self.policy.reactive:
            checked("ignored", "reactive rotation is off for this policy")
            return None
        try:
            current = self.store.access(self.name, CURRENT)
        except SecretError as exc:
            checked("failed", self._error(exc))
            return None
        self._seen(current.secret)
        if current.version != failure.version:
            checked("stale", f"current is version {current.version}; the consumer's next refresh fixes it")
            return None
        if current.secret.fingerprint != failure.fingerprint:
            checked("ignored", "the report's fingerprint is not the current version's: not from a consumer of it")
            return None
        if self.verifier is not None:
            try:
                self.verifier.verify(self.name, current.secret)
            except VerificationFailed as exc:
                problem = self._redact(str(exc))
            except Exception as exc:  # noqa: BLE001 - a crashing check cannot confirm a failure
                checked("failed", f"verifier crashed: {self._error(exc)}")
                return None
            else:
                checked("current_valid", "the protected system accepts current; no rotation")
                return None
        else:
            problem = "no verifier configured; trusting the consumer's report"
        now = time.time()
        if state.last_reactive is not None and now - state.last_reactive < self.policy.min_interval:
            checked("skipped", f"{problem}; a reactive rotation ran less than min_interval ago")
            return None
        if self._backing_off(state, now):
            checked("skipped", f"{problem}; failure backoff")
            return None
        checked("current_rejected", problem)
        state.last_reactive = now
        return self._rotate(state, trigger=REACTIVE, actor=actor, reason=f"{failure.actor}: {problem}")
