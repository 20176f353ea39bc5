"""Credentials in a pipeline: a side input saying which versions are current, and a helper that
gives consuming DoFns a value that survives rotations, revocations and store outages.

**What the side input carries.** :class:`ReadSecretVersions` emits :class:`StageView` elements:
the version ids of ``current`` and ``previous``, never values. Runners encode, shuffle and
checkpoint side inputs (Dataflow's state, Flink's checkpoints), and Beam pickles combiner
accumulators; a value in a PCollection would reach all of those (``Latest``'s accumulator
would even try to pickle the :class:`~connectors.secrets.Secret`, which refuses). Each worker
reads the value of a version it has not seen yet, and caches it by version id (a version's
value never changes).

**Batch vs streaming.** Batch: one fetch (``Impulse``). Streaming: a ``PeriodicImpulse`` every
``refresh_interval``, deduplicated with ``Latest.Globally().without_defaults()`` in the global
window, since the FnApiRunner re-emits a self-checkpointing impulse's output. On the local
FnApiRunner a downstream stage only starts once its side input's stage has finished, so a
never-ending impulse would block the main input: there the impulse must be bounded
(``stop_after``) and the side input only provides the starting view.

**Refresh inside the DoFn.** So that rotation works on every runner, including the local one,
:class:`Credentials` also refreshes by itself when the side input is not live (its view is
older than two intervals): it reads ``current`` from the store at most once per
``refresh_interval`` per worker process, whichever DoFn instance or thread asks. When the side
input is live (Dataflow/Flink streaming), workers only read a value when the view announces a
new version, so the store sees one metadata read per interval for the whole pipeline plus one
access per worker per rotation. Either way a worker makes at most one access per interval;
accesses are counted by Beam counters (``secrets/<name>/accesses``) and :data:`ACCESSES`.

**Failures.** A failed refresh keeps the last-known-good values, for at most ``max_staleness``
(24 h by default) since the store last confirmed them (a successful read, or a live view):
after that the helper raises :class:`CredentialUnavailable` instead of serving a value the
store may have revoked long ago, so an outage fails loudly rather than silently. An empty
side input is not an error. When the protected system rejects ``current``, the helper tries ``previous``, reports
the rejected version to the rotation service (reactive policy), and retries with whatever the
next allowed refresh brings, for up to ``auth_wait`` seconds.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import StandardOptions

from connectors.errors import EXIT_RUN_FAILED, RunError
from connectors.metrics import METRIC_NAMESPACE
from connectors.secrets import Secret, SecretError
from connectors.secrets.audit import scrub
from connectors.secrets.model import CURRENT, SecretSource, StageView, VersionedSecret
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.registry import open_source
from connectors.secrets.reporting import AuthFailure, FailureReporter
from transforms.periodic import periodic_latest

T = TypeVar("T")
log = logging.getLogger(__name__)


class AuthenticationFailed(RunError):
    """Raised by a consumer's call when the protected system rejects the credential (401/403)."""


class CredentialUnavailable(SecretError):
    """No value has ever been read on this worker and the store cannot be read now."""

    exit_code = EXIT_RUN_FAILED


class AccessLog:
    """Store accesses made by this process, per secret name: for tests and benchmarks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times: dict[str, list[float]] = {}

    def record(self, name: str, at: float) -> None:
        """One access to ``name`` at monotonic time ``at`` (the instant the slot was claimed)."""
        with self._lock:
            self._times.setdefault(name, []).append(at)

    def times(self, name: str) -> list[float]:
        """Monotonic times of every access to ``name`` by this process."""
        with self._lock:
            return list(self._times.get(name, []))

    def reset(self) -> None:
        with self._lock:
            self._times.clear()


ACCESSES = AccessLog()


def _metric(name: str, what: str) -> Any:
    return Metrics.counter(METRIC_NAMESPACE, f"secrets/{name}/{what}")


# --------------------------------------------------------------------------- side input


class _FetchStages(beam.DoFn):
    """One metadata read per impulse; nothing on failure (consumers keep what they have)."""

    def __init__(self, source_json: str, name: str) -> None:
        self._source_json = source_json
        self._name = name
        self._source: SecretSource | None = None

    def setup(self) -> None:
        self._source = open_source(json.loads(self._source_json))
        self._reads = _metric(self._name, "stage_reads")
        self._failures = _metric(self._name, "stage_read_failures")

    def process(self, _impulse: Any) -> Any:
        assert self._source is not None
        self._reads.inc()
        try:
            yield self._source.stages(self._name)
        except SecretError as exc:
            self._failures.inc()
            log.warning(
                "secret %s: reading its versions failed (%s); consumers keep their values",
                self._name,
                exc,
            )

    def teardown(self) -> None:
        if self._source is not None:
            self._source.close()


class ReadSecretVersions(beam.PTransform):
    """A PCollection of :class:`StageView` for one secret, to use as a side input.

    Args:
        source: provider config, or a list of them (an ordered chain); no values in it.
        name: the secret's name.
        refresh_interval: seconds between reads in streaming.
        streaming: force the batch (single fetch) or streaming shape; default: the pipeline's
            ``--streaming`` option.
        stop_after: end the streaming impulse after this many seconds. Required on the local
            FnApiRunner, where a never-ending side input blocks the main input.
    """

    def __init__(
        self,
        source: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        name: str,
        *,
        refresh_interval: float = 60.0,
        streaming: bool | None = None,
        stop_after: float | None = None,
    ) -> None:
        super().__init__()
        self._source_json = json.dumps(source, sort_keys=True)
        self._name = name
        self._interval = refresh_interval
        self._streaming = streaming
        self._stop_after = stop_after

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        streaming = self._streaming
        if streaming is None:
            streaming = pbegin.pipeline.options.view_as(StandardOptions).streaming
        fetch = beam.ParDo(_FetchStages(self._source_json, self._name)).with_output_types(StageView)
        if not streaming:
            return pbegin | "Once" >> beam.Impulse() | "Fetch" >> fetch
        return periodic_latest(
            pbegin,
            fetch,
            interval=self._interval,
            stop_after=self._stop_after,
            read_label="Fetch",
        )


def side_input(views: beam.PCollection) -> beam.pvalue.AsSingleton:
    """``views`` as a side input that is None, not an error, while empty."""
    return beam.pvalue.AsSingleton(views, default_value=None)


# --------------------------------------------------------------------------- per-worker state


class _WorkerSecret:
    """One secret's values on one worker process, shared by every DoFn instance and thread."""

    def __init__(self, source_json: str, name: str) -> None:
        self.name = name
        self._source_json = source_json
        self._source: SecretSource | None = None
        self.lock = threading.Lock()
        self.reading = threading.Lock()  # held during a store read, so cold threads can wait
        self.current: VersionedSecret | None = None
        self.previous: VersionedSecret | None = None
        self.prefer_previous = False
        self.last_access = float("-inf")  # monotonic
        self.polled_at = float("-inf")  # wall time of the last successful read of `current`
        self.confirmed_at = float("-inf")  # wall time the store last confirmed what we hold
        self.view_at = float("-inf")  # wall time the newest side-input view was fetched
        self.announced: str | None = None  # a version a newer view named, not yet read
        self.force_poll = False
        self.reported: dict[str, float] = {}

    def source(self) -> SecretSource:
        if self._source is None:
            self._source = open_source(json.loads(self._source_json))
        return self._source

    def install(self, found: VersionedSecret) -> None:
        if self.current is None or found.version != self.current.version:
            if self.current is not None:
                self.previous = self.current
            self.current = found
            self.prefer_previous = False

    def candidates(self) -> list[VersionedSecret]:
        ordered = (
            [self.previous, self.current] if self.prefer_previous else [self.current, self.previous]
        )
        return [c for c in ordered if c is not None]


_WORKER_SECRETS: dict[tuple[str, str], _WorkerSecret] = {}
_WORKER_LOCK = threading.Lock()


def _worker_secret(source_json: str, name: str) -> _WorkerSecret:
    with _WORKER_LOCK:
        key = (source_json, name)
        if key not in _WORKER_SECRETS:
            _WORKER_SECRETS[key] = _WorkerSecret(source_json, name)
        return _WORKER_SECRETS[key]


# --------------------------------------------------------------------------- consumer helper


class Credentials:
    """A consuming DoFn's access to one secret. Picklable: it holds the provider config only.

    Use it from a DoFn::

        class CallApi(beam.DoFn):
            def __init__(self, credentials):
                self.credentials = credentials
            def setup(self):
                self.credentials.setup()
            def process(self, batch, view):
                yield self.credentials.call(lambda secret: post(batch, secret), view)

        rows | beam.ParDo(CallApi(creds), side_input(p | ReadSecretVersions(source, name)))

    Args:
        source: provider config or chain (as for :class:`ReadSecretVersions`).
        name: the secret's name.
        refresh_interval: at most one store access per this many seconds per worker; must
            match the rotation policy's ``refresh_interval`` (see :meth:`for_policy`).
        reporter: where rejected versions are reported (the rotation service's inbox).
        auth_wait: how long :meth:`call` keeps retrying when every known version is rejected.
        max_staleness: the longest a last-known-good value is used without the store
            confirming it (seconds, default 24 h).
        allow_expired: use a version past its expiry (as the store records it); by default
            such a version is skipped, and if nothing else is known the call fails.
    """

    def __init__(
        self,
        source: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        name: str,
        *,
        refresh_interval: float = 60.0,
        reporter: FailureReporter | None = None,
        auth_wait: float | None = None,
        max_staleness: float = 86400.0,
        allow_expired: bool = False,
    ) -> None:
        if refresh_interval <= 0:
            raise ValueError("refresh_interval must be positive")
        if max_staleness < refresh_interval:
            raise ValueError("max_staleness must be at least one refresh_interval")
        self.max_staleness = max_staleness
        self.allow_expired = allow_expired
        self.source_json = json.dumps(source, sort_keys=True)
        self.name = name
        self.refresh_interval = refresh_interval
        self.reporter = reporter
        self.auth_wait = auth_wait if auth_wait is not None else max(30.0, 3 * refresh_interval)
        self._shared: _WorkerSecret | None = None

    @classmethod
    def for_policy(
        cls,
        policy: RotationPolicy,
        *,
        reporter: FailureReporter | None = None,
        auth_wait: float | None = None,
    ) -> Credentials:
        """A helper reading the policy's store at the policy's refresh interval, so the
        overlap window the policy validated is the one consumers actually need."""
        return cls(
            policy.store,
            policy.secret,
            refresh_interval=policy.refresh_interval,
            reporter=reporter,
            auth_wait=auth_wait,
        )

    def __getstate__(self) -> dict[str, Any]:
        # per-process values and counters never travel with the DoFn: config only
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._shared = None

    def setup(self) -> None:
        """Call from ``DoFn.setup``: binds this process's shared values and counters."""
        self._shared = _worker_secret(self.source_json, self.name)
        self._accesses = _metric(self.name, "accesses")
        self._access_failures = _metric(self.name, "access_failures")
        self._auth_failures = _metric(self.name, "auth_failures")
        self._previous_used = _metric(self.name, "previous_used")

    @property
    def shared(self) -> _WorkerSecret:
        if self._shared is None:
            self.setup()
        assert self._shared is not None
        return self._shared

    # ------------------------------------------------------------------ refresh

    def _plan(self, view: StageView | None) -> str | None:
        """What to read now (a version id or ``current``), or None; claims the access slot."""
        shared = self.shared
        now = time.monotonic()
        with shared.lock:
            live_since = time.time() - 2 * self.refresh_interval
            if view is not None and view.fetched_at > shared.view_at:
                shared.view_at = view.fetched_at
                if shared.current is not None and view.current == shared.current.version:
                    shared.confirmed_at = max(shared.confirmed_at, view.fetched_at)
                # act on a view only if it is live and newer than this worker's own last read
                if (
                    view.fetched_at > max(shared.polled_at, live_since)
                    and view.current is not None
                    and (shared.current is None or view.current != shared.current.version)
                ):
                    shared.announced = view.current
            if now - shared.last_access < self.refresh_interval:
                return None
            live = shared.view_at >= live_since
            target: str | None = None
            if shared.announced is not None:
                target, shared.announced = shared.announced, None
            elif shared.force_poll or shared.current is None or not live:
                target = CURRENT
            if target is not None:
                shared.last_access = now
                shared.force_poll = False
                ACCESSES.record(self.name, now)
            return target

    def refresh(self, view: StageView | None = None) -> None:
        """Read the store if the view announces a new version, or the view is not live and an
        interval has passed; at most one access per interval per process, failures kept quiet
        (the last-known-good values stay)."""
        target = self._plan(view)
        if target is None:
            return
        shared = self.shared
        self._accesses.inc()
        started = time.time()
        try:
            with shared.reading:
                found = shared.source().access(self.name, target)
        except SecretError as exc:
            self._access_failures.inc()
            log.warning(
                "secret %s: refresh failed (%s); using the last-known-good value", self.name, exc
            )
            return
        with shared.lock:
            if target == CURRENT:
                shared.polled_at = started
            shared.confirmed_at = max(shared.confirmed_at, started)
            shared.install(found)

    def _known(self) -> list[VersionedSecret]:
        """Current and previous as held now, without expired ones unless allowed; if none yet,
        after any read in flight finishes. Raises :class:`CredentialUnavailable` once they are
        older than ``max_staleness``, or when every one of them has expired."""
        shared = self.shared
        with shared.lock:
            found = shared.candidates()
        if not found:
            with shared.reading:
                pass
            with shared.lock:
                found = shared.candidates()
        now = time.time()
        age = now - shared.confirmed_at
        if found and age > self.max_staleness:
            raise CredentialUnavailable(
                f"secret {self.name!r}: the store has not confirmed the last-known-good value for "
                f"{age:.0f}s (max_staleness {self.max_staleness:g}s)"
            )
        usable = [
            c
            for c in found
            if self.allow_expired or c.expire_time is None or c.expire_time.timestamp() > now
        ]
        if found and not usable:
            raise CredentialUnavailable(
                f"secret {self.name!r}: every known version has expired (version {found[0].version}); "
                "rotate it, or set allow_expired"
            )
        return usable

    def current(self, view: StageView | None = None) -> VersionedSecret:
        """The current value after a (rate-limited) refresh; for steps that just need a key."""
        self.refresh(view)
        candidates = self._known()
        if not candidates:
            raise CredentialUnavailable(
                f"secret {self.name!r} has not been read on this worker and the store is unavailable"
            )
        return candidates[0]

    def scrub(self, text: str) -> str:
        """``text`` without any value this worker holds (for errors bound for dead letters)."""
        with self.shared.lock:
            known = self.shared.candidates()
        return scrub(text, [c.secret for c in known])

    # ------------------------------------------------------------------ calling

    def _report(self, rejected: VersionedSecret, detail: str) -> None:
        shared = self.shared
        now = time.monotonic()
        with shared.lock:
            if now - shared.reported.get(rejected.version, float("-inf")) < self.refresh_interval:
                return
            shared.reported[rejected.version] = now
            shared.force_poll = True
        if self.reporter is None:
            return
        failure = AuthFailure(
            secret=self.name,
            version=rejected.version,
            fingerprint=rejected.secret.fingerprint,
            actor=f"worker:{socket.gethostname()}:{os.getpid()}",
            time=time.time(),
            detail=detail,
        )
        try:
            self.reporter.report(failure)
        except OSError as exc:
            log.warning("secret %s: could not report a rejected version (%s)", self.name, exc)

    def call(self, fn: Callable[[Secret], T], view: StageView | None = None) -> T:
        """``fn(secret)`` with ``current``, then ``previous`` if ``fn`` raises
        :class:`AuthenticationFailed`; when both are rejected, report, wait for the next
        allowed refresh and try again, for up to ``auth_wait`` seconds."""
        deadline = time.monotonic() + self.auth_wait
        shared = self.shared
        while True:
            self.refresh(view)
            candidates = self._known()
            for candidate in candidates:
                try:
                    result = fn(candidate.secret)
                except AuthenticationFailed as exc:
                    self._auth_failures.inc()
                    self._report(candidate, scrub(str(exc), [candidate.secret]))
                    continue
                with shared.lock:
                    # keep using previous while current is rejected; back to current once it works
                    shared.prefer_previous = candidate is shared.previous
                if shared.prefer_previous:
                    self._previous_used.inc()
                return result
            now = time.monotonic()
            if now >= deadline:
                if not candidates:
                    raise CredentialUnavailable(
                        f"secret {self.name!r}: no value could be read for {self.auth_wait:g}s"
                    )
                raise AuthenticationFailed(
                    f"secret {self.name!r}: every known version was rejected for {self.auth_wait:g}s"
                )
            with shared.lock:
                shared.force_poll = True
                wait = shared.last_access + self.refresh_interval - now
            time.sleep(min(max(wait, 0.0) + 0.005, deadline - now))
