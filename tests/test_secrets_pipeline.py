"""Proofs that the credential service works inside real Beam pipelines (FnApiRunner).

A pipeline calls the :class:`ProtectedApi` with a bearer token for batches of row ids while the
rotation service (running in a thread, as ``beamwright secrets run`` would) rotates the token
in Secret Manager (the real client over gRPC to :class:`FakeSecretManager`). The API accepts
only tokens it minted and has not revoked, so a consumer that used a disabled credential
would fail for real.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
import requests
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.records import dead_letters_for_rows
from connectors.secrets import Secret
from connectors.secrets.model import CURRENT, StageView
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.refs import StoredSecret
from connectors.secrets.registry import open_store
from connectors.secrets.service import RotationService
from tests.servers.api import ProtectedApi
from tests.servers.gsm import FakeSecretManager
from tests.servers.notify import SmtpSink, WebhookReceiver
from transforms.credentials import (
    ACCESSES,
    AuthenticationFailed,
    Credentials,
    CredentialUnavailable,
    ReadSecretVersions,
    side_input,
)

GROUP = 250  # row ids per API call
WEBHOOK_KEY = b"pipeline-webhook-key-0123456789"


class ApiRejected(Exception):
    """The API refused a batch for a reason other than the credential."""


class CallProtectedApi(beam.DoFn):
    """Send each Arrow batch's ids to the API in groups of ``GROUP``, authenticated with the
    secret; rows of a group that cannot be delivered become dead letters."""

    def __init__(self, url: str, credentials: Credentials) -> None:
        self.url = url
        self.credentials = credentials

    def setup(self) -> None:
        self.credentials.setup()
        self.session = requests.Session()
        self.delivered = Metrics.counter("test", "rows_delivered")

    def _post(self, ids: list[int], secret: Secret) -> None:
        response = self.session.post(
            self.url + "/rows",
            json={"ids": ids},
            headers={"Authorization": "Bearer " + secret.reveal().decode()},
            timeout=90,
        )
        if response.status_code in (401, 403):
            raise AuthenticationFailed(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ApiRejected(f"HTTP {response.status_code}: {response.text}")

    def process(self, table: pa.Table, view: StageView | None) -> Iterator[Any]:
        ids = table.column("id").to_pylist()
        delivered, dead = [], []
        for start in range(0, len(ids), GROUP):
            chunk = ids[start : start + GROUP]
            try:
                self.credentials.call(lambda secret, chunk=chunk: self._post(chunk, secret), view)
            except (AuthenticationFailed, CredentialUnavailable, ApiRejected, OSError) as exc:
                dead.append((chunk, self.credentials.scrub(str(exc))))
            else:
                delivered.extend(chunk)
        self.delivered.inc(len(delivered))
        if delivered:
            yield table.filter(
                pa.compute.is_in(table.column("id"), pa.array(delivered, pa.int64()))
            )
        for chunk, error in dead:
            rows = table.filter(pa.compute.is_in(table.column("id"), pa.array(chunk, pa.int64())))
            yield beam.pvalue.TaggedOutput(
                "dead_letters",
                dead_letters_for_rows(
                    rows,
                    errors=[error] * rows.num_rows,
                    rules=["api"] * rows.num_rows,
                    step="call_api",
                    run_id="test",
                ),
            )


def make_batch(index: int, rows: int) -> pa.Table:
    ids = list(range(index * rows, (index + 1) * rows))
    return pa.table(
        {"id": pa.array(ids, pa.int64()), "email": [f"user{i}@example.test" for i in ids]}
    )


def counters(result: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + int(value or 0)
    return found


@dataclass
class Run:
    result: Any
    counters: dict[str, int]
    seconds: float
    pipeline: beam.Pipeline
    dead_letters: list[pa.Table] = field(default_factory=list)


def run_pipeline(
    creds: Credentials,
    source: dict[str, Any],
    api: ProtectedApi,
    *,
    batches: int,
    rows: int = 1000,
    extra: Callable[[beam.PCollection], None] | None = None,
    streaming: bool = False,
    stop_after: float | None = None,
    poison: bool = False,
) -> Run:
    options = PipelineOptions(["--streaming"] if streaming else [])
    pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    views = pipeline | ReadSecretVersions(
        source, creds.name, refresh_interval=creds.refresh_interval, stop_after=stop_after
    )
    tables = (
        pipeline
        | beam.Create(list(range(batches)) + ([-1] if poison else []))
        | beam.Map(make_batch, rows).with_output_types(pa.Table)
    )
    outputs = tables | beam.ParDo(CallProtectedApi(api.url, creds), side_input(views)).with_outputs(
        "dead_letters", main="rows"
    )
    if extra is not None:
        extra(outputs)
    started = time.monotonic()
    result = pipeline.run()
    result.wait_until_finish()
    return Run(result, counters(result), time.monotonic() - started, pipeline)


class Rig:
    """Secret Manager, the protected API, notification sinks and a running rotation service."""

    def __init__(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, latency: float = 0.01
    ) -> None:
        self.gsm = FakeSecretManager().start()
        self.api = ProtectedApi(latency=latency)
        self.webhook = WebhookReceiver(WEBHOOK_KEY)
        self.smtp = SmtpSink()
        monkeypatch.setenv("BW_TEST_ADMIN_TOKEN", self.api.admin_token)
        monkeypatch.setenv("BW_TEST_WEBHOOK_KEY", WEBHOOK_KEY.decode())
        self.name = f"api-token-{uuid.uuid4().hex[:8]}"
        self.source = {
            "type": "gcp",
            "project": "proof",
            "emulator_host": self.gsm.address,
            "timeout": 1,
        }
        self.home = tmp_path / "rotation"
        self.service = RotationService(self.home, actor="rotation-service")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def policy(self, **overrides: Any) -> RotationPolicy:
        data: dict[str, Any] = {
            "secret": self.name,
            "store": self.source,
            "refresh_interval": 0.25,
            "longest_bundle": 0.5,
            "overlap": 1.5,
            "issuer": self.api.issuer_config(),
            "verifier": self.api.verifier_config(),
            "notify": [
                {"type": "webhook", "url": self.webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}},
                {
                    "type": "smtp",
                    "host": "127.0.0.1",
                    "port": self.smtp.port,
                    "sender": "bw@test",
                    "to": ["ops@test"],
                },
            ],
            "failure_backoff": 2,
        }
        data.update(overrides)
        return RotationPolicy.from_dict(data)

    def credentials(self, policy: RotationPolicy) -> Credentials:
        return Credentials.for_policy(policy, reporter=self.service.reporter(), auth_wait=30)

    def serve(self) -> None:
        """Run the rotation scheduler in the background, as ``beamwright secrets run`` does."""
        self._thread = threading.Thread(
            target=self.service.run, args=(self._stop,), kwargs={"interval": 0.05}, daemon=True
        )
        self._thread.start()

    def current(self) -> Any:
        store = open_store(self.source)
        try:
            return store.access(self.name, CURRENT)
        finally:
            store.close()

    def audit(self) -> list[dict[str, Any]]:
        return self.service.audit_log(self.name)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.service.close()
        self.api.close()
        self.webhook.close()
        self.smtp.close()
        self.gsm.stop()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    rig = Rig(tmp_path, monkeypatch)
    yield rig
    rig.close()


def _promotions(rig: Rig) -> list[dict[str, Any]]:
    return [line for line in rig.audit() if line["action"] == "promote"]


def _steps(rig: Rig, rotation_id: str) -> list[tuple[str, str]]:
    return [
        (line["action"], line["outcome"])
        for line in rig.audit()
        if line["rotation_id"] == rotation_id
    ]


ROTATION_STEPS = [
    ("rotate", "started"),
    ("generate", "ok"),
    ("add_pending", "ok"),
    ("verify", "ok"),
    ("promote", "ok"),
    ("schedule_disable", "scheduled"),
    ("notify", "sent"),
    ("notify", "sent"),
]


@pytest.mark.slow
def test_zero_downtime_through_three_rotations(rig: Rig) -> None:
    at = datetime.now(timezone.utc) + timedelta(seconds=4)
    policy = rig.policy(schedule=f"{at.minute} {at.hour} * * * {at.second}")
    rig.service.start(policy)
    initial = rig.current()
    rig.serve()
    api = rig.api
    scheduled_seen = api.hold_at(30_000)
    forced_seen = api.hold_at(60_000)
    revoked = api.hold_at(80_000)
    marks: dict[str, Any] = {}

    def orchestrate() -> None:
        rig.wait_for(lambda: len(_promotions(rig)) >= 2, "the scheduled rotation")
        scheduled_seen.set()
        rig.wait_for(lambda: api.accepted_rows >= 45_000, "45k rows")
        forced = rig.service.rotate(rig.name, actor="operator", reason="forced by the test")
        marks["forced"] = forced
        forced_seen.set()
        rig.wait_for(
            lambda: any(
                line["action"] == "disable_previous"
                and line["version"] == forced.previous
                and line["outcome"] == "ok"
                for line in rig.audit()
            ),
            "the end of the forced rotation's overlap",
        )
        rig.wait_for(lambda: api.accepted_rows >= 65_000, "65k rows")
        victim = rig.current()
        marks["rejected_before_revocation"] = sum(api.rejected_by_token.values())
        marks["revoked"] = victim
        api.revoke(victim.secret.reveal().decode())  # e.g. leaked and revoked at the issuer
        revoked.set()

    conductor = threading.Thread(target=orchestrate, daemon=True)
    conductor.start()
    ACCESSES.reset()
    run = run_pipeline(rig.credentials(policy), rig.source, api, batches=100)
    conductor.join(timeout=5)

    # zero rows lost, zero failed calls
    assert run.counters["rows_delivered"] == 100_000
    assert len(api.accepted) == 100_000 and max(api.accepted.values()) == 1
    assert run.counters.get(f"secrets/{rig.name}/auth_failures", 0) == sum(
        api.rejected_by_token.values()
    )
    assert marks["rejected_before_revocation"] == 0, (
        "no call may fail during scheduled or forced rotations"
    )
    assert api.rejected_by_token, "the revoked token was rejected at least once"
    assert not set(api.rejected_by_token) & api.valid_fingerprints(), (
        "only revoked tokens were rejected"
    )

    # three rotations (plus the initial one), each with every step in the audit log
    promotions = _promotions(rig)
    assert [p["trigger"] for p in promotions] == ["initial", "scheduled", "manual", "reactive"]
    for promotion in promotions[1:]:
        assert _steps(rig, promotion["rotation_id"]) == ROTATION_STEPS
    assert promotions[2]["actor"] == "operator"
    audit = rig.audit()
    disabled = {
        line["version"]
        for line in audit
        if line["action"] == "disable_previous" and line["outcome"] == "ok"
    }
    assert {initial.version, marks["forced"].previous} <= disabled
    report = next(line for line in audit if line["action"] == "auth_failure")
    assert report["version"] == marks["revoked"].version and report["actor"].startswith("worker:")
    check = next(
        line
        for line in audit
        if line["action"] == "refresh_check" and line["outcome"] == "current_rejected"
    )
    assert "HTTP 401" in check["detail"]

    # every new token carried traffic: consumers picked up each rotation
    used = set(api.calls_by_token)
    new_versions = [p["fingerprint"] for p in promotions]
    assert set(new_versions) <= used | {initial.secret.fingerprint}
    assert new_versions[-1] in used and new_versions[1] in used and new_versions[2] in used
    assert [e["event"] for e in rig.webhook.events()].count("rotated") == 4

    # accesses: at most one per refresh interval on this (single) worker
    times = ACCESSES.times(rig.name)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= policy.refresh_interval * 0.99
    assert len(times) <= run.seconds / policy.refresh_interval + 2
    print(
        f"\nzero-downtime: {run.counters['rows_delivered']} rows in {run.seconds:.1f}s, "
        f"{sum(api.calls_by_token.values())} calls, {sum(api.rejected_by_token.values())} rejected attempts "
        f"(after revocation, all retried), {len(times)} secret accesses, rotations {[p['trigger'] for p in promotions]}"
    )


@pytest.mark.slow
def test_failed_verification_rolls_back_mid_run(rig: Rig) -> None:
    policy = rig.policy()
    rig.service.start(policy)
    original = rig.current()
    rig.serve()
    hold = rig.api.hold_at(10_000)
    outcome: dict[str, Any] = {}

    def orchestrate() -> None:
        rig.wait_for(lambda: rig.api.accepted_rows >= 10_000, "10k rows")
        # the issuer now hands out tokens the protected system does not know
        rig.service.start(rig.policy(issuer={"type": "random"}), replace=True)
        outcome["result"] = rig.service.rotate(rig.name, actor="operator")
        hold.set()

    conductor = threading.Thread(target=orchestrate, daemon=True)
    conductor.start()
    run = run_pipeline(rig.credentials(policy), rig.source, rig.api, batches=30)
    conductor.join(timeout=5)

    result = outcome["result"]
    assert result.outcome == "rolled_back" and "HTTP 401" in result.reason
    assert run.counters["rows_delivered"] == 30_000 and sum(rig.api.rejected_by_token.values()) == 0
    assert set(rig.api.calls_by_token) == {original.secret.fingerprint}, (
        "only the old credential was ever used"
    )
    assert rig.current().version == original.version
    steps = dict(_steps(rig, result.rotation_id))
    assert (
        steps["verify"] == "failed"
        and steps["rollback"] == "rolled_back"
        and "promote" not in steps
    )
    rollback = next(line for line in rig.audit() if line["action"] == "rollback")
    assert "answered HTTP 401" in rollback["detail"]
    assert [e["event"] for e in rig.webhook.events()] == ["rotated", "rolled_back"]
    assert "answered HTTP 401" in rig.webhook.events()[-1]["reason"]
    assert any(
        "rotation rolled back" in m["content"] and "HTTP 401" in m["content"]
        for m in rig.smtp.messages
    )


@pytest.mark.slow
def test_store_outage_runs_on_last_known_good_and_recovers(rig: Rig) -> None:
    policy = rig.policy()
    rig.service.start(policy)
    original = rig.current()
    rig.serve()
    recovered = rig.api.hold_at(30_000)
    marks: dict[str, Any] = {}

    def orchestrate() -> None:
        rig.wait_for(lambda: rig.api.accepted_rows >= 8_000, "8k rows")
        rig.gsm.stop()
        marks["down_at"] = rig.api.accepted_rows
        time.sleep(1.5)  # six refresh intervals without a store
        marks["up_at"] = rig.api.accepted_rows
        rig.gsm.start()
        rig.wait_for(
            lambda: rig.service.rotate(rig.name, reason="after the outage").outcome == "rotated",
            "a rotation",
            timeout=20,
        )
        marks["new"] = rig.current()
        recovered.set()

    conductor = threading.Thread(target=orchestrate, daemon=True)
    conductor.start()
    ACCESSES.reset()
    run = run_pipeline(rig.credentials(policy), rig.source, rig.api, batches=40)
    conductor.join(timeout=5)

    assert run.counters["rows_delivered"] == 40_000 and len(rig.api.accepted) == 40_000
    assert sum(rig.api.rejected_by_token.values()) == 0
    assert marks["up_at"] > marks["down_at"], "the pipeline kept calling during the outage"
    assert run.counters[f"secrets/{rig.name}/access_failures"] >= 3
    assert rig.api.calls_by_token[original.secret.fingerprint] > 0
    assert rig.api.calls_by_token[marks["new"].secret.fingerprint] > 0, (
        "the new version was picked up after recovery"
    )


@pytest.mark.slow
def test_no_secret_value_leaks_anywhere(rig: Rig, tmp_path: Path) -> None:
    from connectors.fileio import WriteFiles
    from lineage.emitter import EVENT_OBSERVERS, RunLineage
    from transforms.mask import Mask

    policy = rig.policy()
    rig.service.start(policy)
    mask_key = RotationPolicy(
        secret=f"{rig.name}-mask", store=rig.source, issuer={"type": "random"}
    )
    rig.service.start(mask_key)
    rig.serve()
    records: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Capture(level=logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    events: list[dict[str, Any]] = []
    EVENT_OBSERVERS.append(events.append)
    lineage = RunLineage(
        namespace="proof",
        job_name="no-leak",
        run_id=str(uuid.uuid4()),
        event_log=str(tmp_path / "lineage.jsonl"),
    )
    out = tmp_path / "out"

    def extra(outputs: Any) -> None:
        masked = outputs.rows | "Mask" >> Mask(
            fields=[
                {
                    "field": "email",
                    "strategy": "pseudonymize",
                    "key": StoredSecret.of(rig.source, mask_key.secret),
                }
            ]
        )
        masked.rows | "WriteRows" >> WriteFiles(
            str(out / "rows"), sink_name="rows", format_name="jsonl"
        )
        (
            (outputs.dead_letters, masked.dead_letters)
            | beam.Flatten()
            | "WriteDead" >> WriteFiles(str(out / "dead"), sink_name="dead", format_name="jsonl")
        )

    hold = rig.api.hold_at(5_000)

    def orchestrate() -> None:
        rig.wait_for(lambda: rig.api.accepted_rows >= 5_000, "5k rows")
        rig.service.rotate(rig.name)
        rig.service.start(
            rig.policy(issuer={"type": "random"}), replace=True
        )  # the next one fails and rolls back
        rig.service.rotate(rig.name)
        hold.set()

    conductor = threading.Thread(target=orchestrate, daemon=True)
    conductor.start()
    try:
        lineage.emit("START", inputs=[], outputs=[])
        run = run_pipeline(
            rig.credentials(policy),
            rig.source,
            rig.api,
            batches=12,
            extra=extra,
            poison=True,  # a batch the API rejects, echoing the token: dead letters must be scrubbed
        )
        lineage.emit("COMPLETE", inputs=[], outputs=[])
        lineage.close()
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        EVENT_OBSERVERS.remove(events.append)
    conductor.join(timeout=5)

    assert run.counters["rows_delivered"] == 12_000
    dead = [
        json.loads(line)
        for f in (out / "dead").glob("part-*")
        for line in f.read_text().splitlines()
    ]
    assert len(dead) == 1000 and all("Bearer [redacted]" in d["errorMessage"] for d in dead)

    secrets = [v.decode() for v in rig.gsm.values()] + rig.api.all_tokens()
    secrets += [WEBHOOK_KEY.decode(), rig.api.admin_token]
    assert len(secrets) >= 6
    haystacks: dict[str, str] = {"logs": "\n".join(records), "lineage": json.dumps(events)}
    haystacks["metrics"] = json.dumps(run.counters)
    haystacks["options"] = json.dumps(run.pipeline.options.get_all_options(), default=str)
    haystacks["graph"] = run.pipeline.to_runner_api().SerializeToString().decode("latin-1")
    haystacks["webhooks"] = json.dumps(
        [{"h": r["headers"], "b": r["body"].decode()} for r in rig.webhook.received]
    )
    haystacks["mail"] = json.dumps(rig.smtp.messages)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any("dead" in name and "part-" in name for name in haystacks), (
        "dead letters were written"
    )
    assert any(name.endswith("audit.jsonl") for name in haystacks)
    for where, text in haystacks.items():
        for value in secrets:
            assert value not in text, f"a secret value leaked into {where}"
