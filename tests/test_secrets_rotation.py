"""The rotation engine and service against a real protected API, webhook receiver and SMTP server."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.secrets import Secret
from connectors.secrets.engine import RotationEngine
from connectors.secrets.model import CURRENT, DESTROYED, DISABLED, PENDING, PREVIOUS, SecretNotFound
from connectors.secrets.notify import verify_signature
from connectors.secrets.policy import PolicyError, RotationPolicy, parse_duration
from connectors.secrets.registry import open_store
from connectors.secrets.reporting import AuthFailure
from connectors.secrets.service import RotationService
from tests.servers.api import ProtectedApi
from tests.servers.notify import SmtpSink, WebhookReceiver

WEBHOOK_KEY = b"webhook-signing-key-0123456789"


@pytest.fixture
def api() -> Iterator[ProtectedApi]:
    server = ProtectedApi(ttl=3600)
    yield server
    server.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    sink.close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(WEBHOOK_KEY)
    yield receiver
    receiver.close()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, api: ProtectedApi) -> None:
    monkeypatch.setenv("BW_TEST_ADMIN_TOKEN", api.admin_token)
    monkeypatch.setenv("BW_TEST_WEBHOOK_KEY", WEBHOOK_KEY.decode())


def policy_for(
    tmp_path: Path,
    api: ProtectedApi,
    *,
    webhook: WebhookReceiver | None = None,
    smtp: SmtpSink | None = None,
    **overrides: Any,
) -> RotationPolicy:
    notify: list[dict[str, Any]] = []
    if webhook is not None:
        notify.append(
            {"type": "webhook", "url": webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}}
        )
    if smtp is not None:
        notify.append(
            {
                "type": "smtp",
                "host": "127.0.0.1",
                "port": smtp.port,
                "sender": "bw@example.test",
                "to": ["ops@example.test"],
            }
        )
    data: dict[str, Any] = {
        "secret": "api-token",
        "store": {"type": "file", "path": str(tmp_path / "store")},
        "refresh_interval": 0.2,
        "longest_bundle": 0.2,
        "issuer": api.issuer_config(),
        "verifier": api.verifier_config(),
        "notify": notify,
        "failure_backoff": 60,
    }
    data.update(overrides)
    return RotationPolicy.from_dict(data)


def call_api(api: ProtectedApi, token: bytes) -> int:
    request = urllib.request.Request(
        api.url + "/health", headers={"Authorization": "Bearer " + token.decode()}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_overlap_rule_and_durations_are_validated(tmp_path: Path) -> None:
    store = {"type": "file", "path": str(tmp_path)}
    with pytest.raises(
        PolicyError, match=r"shorter than 2 x refresh_interval \+ longest_bundle = 150s"
    ):
        RotationPolicy.from_dict(
            {
                "secret": "s",
                "store": store,
                "refresh_interval": "1m",
                "longest_bundle": "30s",
                "overlap": "2m",
            }
        )
    assert (
        RotationPolicy(secret="s", store=store, refresh_interval=60, longest_bundle=30).overlap
        == 150
    )
    with pytest.raises(PolicyError, match="cron"):
        RotationPolicy(secret="s", store=store, schedule="every tuesday")
    with pytest.raises(PolicyError, match="read-only"):
        RotationPolicy(secret="s", store={"type": "env"})
    with pytest.raises(PolicyError, match="not longer than expiry_threshold"):
        RotationPolicy(
            secret="s", store=store, issuer={"type": "random", "ttl": 60}, expiry_threshold=60
        )
    with pytest.raises(PolicyError, match="unknown policy field"):
        RotationPolicy.from_dict({"secret": "s", "store": store, "overlapp": 1})
    assert parse_duration("250ms") == 0.25 and parse_duration("7d") == 604800


def test_rotation_steps_overlap_and_revocation(
    tmp_path: Path, api: ProtectedApi, webhook: WebhookReceiver, smtp: SmtpSink, env: None
) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    policy = policy_for(tmp_path, api, webhook=webhook, smtp=smtp)
    initial = service.start(policy)
    assert initial is not None and initial.outcome == "rotated" and initial.trigger == "initial"
    store = open_store(policy.store)
    first = store.access("api-token")
    assert call_api(api, first.secret.reveal()) == 200

    result = service.rotate("api-token", reason="test")
    assert result.outcome == "rotated" and result.previous == first.version
    second = store.access("api-token")
    assert (
        second.version == result.version
        and store.access("api-token", PREVIOUS).version == first.version
    )
    # during the overlap window both work
    assert (
        call_api(api, first.secret.reveal()) == 200 and call_api(api, second.secret.reveal()) == 200
    )

    steps = [
        line["action"]
        for line in service.audit_log("api-token")
        if line["rotation_id"] == result.rotation_id
    ]
    assert steps == [
        "rotate",
        "generate",
        "add_pending",
        "verify",
        "promote",
        "schedule_disable",
        "notify",
        "notify",
    ]

    service.tick()  # overlap not over yet
    assert call_api(api, first.secret.reveal()) == 200
    time.sleep(policy.overlap + 0.05)
    service.tick()
    assert call_api(api, first.secret.reveal()) == 401, "the demoted credential must be revoked"
    assert call_api(api, second.secret.reveal()) == 200
    info = store.describe("api-token")
    assert info.version(first.version).state == DISABLED and PREVIOUS not in info.stages
    disabled = [
        line for line in service.audit_log("api-token") if line["action"] == "disable_previous"
    ]
    assert (
        disabled[-1]["outcome"] == "ok" and disabled[-1]["fingerprint"] == first.secret.fingerprint
    )

    events = webhook.events()
    assert [e["event"] for e in events] == ["rotated", "rotated"]
    assert (
        events[-1]["fingerprint"] == second.secret.fingerprint and events[-1]["trigger"] == "manual"
    )
    assert all(r["valid"] for r in webhook.received)
    assert any("api-token: rotated" in m["content"] for m in smtp.messages)

    audit_text = (tmp_path / "home" / "audit.jsonl").read_text()
    for token in api.all_tokens():
        assert token not in audit_text
    service.close()


def test_failed_verification_rolls_back(
    tmp_path: Path, api: ProtectedApi, webhook: WebhookReceiver, smtp: SmtpSink, env: None
) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(policy_for(tmp_path, api))
    # the same secret, now with a generator the API does not know: every new value fails the check
    broken = policy_for(tmp_path, api, webhook=webhook, smtp=smtp, issuer={"type": "random"})
    service.start(broken, replace=True)
    store = open_store(broken.store)
    before = store.access("api-token")

    result = service.rotate("api-token")
    assert result.outcome == "rolled_back"
    assert "answered HTTP 401" in result.reason
    after = store.access("api-token")
    assert after.version == before.version and call_api(api, after.secret.reveal()) == 200
    info = store.describe("api-token")
    # a rolled-back value has no use: destroyed, not merely disabled
    assert PENDING not in info.stages and info.version(result.version).state == DESTROYED

    lines = [
        line for line in service.audit_log("api-token") if line["rotation_id"] == result.rotation_id
    ]
    verify = next(line for line in lines if line["action"] == "verify")
    rollback = next(line for line in lines if line["action"] == "rollback")
    assert verify["outcome"] == "failed" and "HTTP 401" in verify["detail"]
    assert rollback["outcome"] == "rolled_back" and "HTTP 401" in rollback["detail"]
    assert [e["event"] for e in webhook.events()] == ["rolled_back"]
    assert "HTTP 401" in webhook.events()[0]["reason"]
    mail = smtp.messages[-1]["content"]
    assert "rotation rolled back" in mail and "HTTP 401" in mail
    service.close()


def test_scheduled_and_proactive_triggers(tmp_path: Path, api: ProtectedApi, env: None) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(policy_for(tmp_path, api, schedule="* * * * * *"))  # every second
    time.sleep(1.1)
    results = service.tick()
    assert [(r.trigger, r.outcome) for r in results] == [("scheduled", "rotated")]

    expiring = policy_for(
        tmp_path,
        api,
        secret="short-lived",
        issuer={"type": "random", "ttl": 30},
        verifier=None,
        expiry_threshold=20,
    )
    service.start(expiring)
    engine = service.engine("short-lived")
    assert engine.tick(actor="tester") == []
    later = engine.tick(actor="tester", now=time.time() + 15)
    assert [(r.trigger, r.outcome) for r in later] == [("proactive", "rotated")]
    assert "expires at" in later[0].reason
    service.close()


def test_reactive_trigger_checks_before_rotating(
    tmp_path: Path, api: ProtectedApi, env: None
) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(policy_for(tmp_path, api))
    store = open_store(service.policy("api-token").store)
    current = store.access("api-token")
    reporter = service.reporter()

    def report(version: str, fingerprint: str) -> None:
        reporter.report(
            AuthFailure("api-token", version, fingerprint, "worker:test", time.time(), "HTTP 401")
        )

    report("0", "stalefingerprint")
    report(current.version, current.secret.fingerprint)  # the API still accepts it
    assert service.tick() == []
    checks = [
        line["outcome"]
        for line in service.audit_log("api-token")
        if line["action"] == "refresh_check"
    ]
    assert checks == ["stale", "current_valid"]

    api.revoke(current.secret.reveal().decode())
    report(current.version, current.secret.fingerprint)
    results = service.tick()
    assert [(r.trigger, r.outcome) for r in results] == [("reactive", "rotated")]
    assert "worker:test" in results[0].reason
    assert call_api(api, store.access("api-token").secret.reveal()) == 200
    service.close()


def test_failures_back_off_and_leftovers_are_discarded(
    tmp_path: Path, api: ProtectedApi, env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(policy_for(tmp_path, api, rotation_timeout=0))  # any leftover is abandoned
    store = open_store(service.policy("api-token").store)
    leftover = store.add_version("api-token", Secret(b"left-by-a-crash"))

    monkeypatch.setenv("BW_TEST_ADMIN_TOKEN", "wrong-admin-token")  # the issuer refuses to mint
    failed = service.rotate("api-token")
    assert failed.outcome == "failed" and "HTTP 401" in failed.reason
    assert store.describe("api-token").version(leftover).state == DESTROYED
    assert any(line["action"] == "discard_pending" for line in service.audit_log("api-token"))

    scheduled = policy_for(tmp_path, api, schedule="* * * * * *", rotation_timeout=0)
    service.start(scheduled, replace=True)
    service.engine("api-token").rotate(actor="tester")  # fails again: backoff starts now
    time.sleep(1.1)
    assert service.tick() == []
    assert service.audit_log("api-token")[-1]["detail"] == "failure backoff"
    service.close()


def test_stop_keeps_scheduled_disables(tmp_path: Path, api: ProtectedApi, env: None) -> None:
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(policy_for(tmp_path, api, schedule="* * * * * *"))
    first = open_store(service.policy("api-token").store).access("api-token")
    service.rotate("api-token")
    service.stop("api-token")
    time.sleep(1.1)
    assert service.tick() == []  # no scheduled rotation once stopped
    assert call_api(api, first.secret.reveal()) == 401, "the overlap still ends after stop"
    status = service.status("api-token")[0]
    assert not status.active and status.previous is None and status.retiring == {}
    with pytest.raises(SecretNotFound):
        open_store(service.policy("api-token").store).access("api-token", PENDING)
    assert status.current is not None and status.current.stages == frozenset({CURRENT})
    service.close()


def test_webhook_signatures_reject_forgery_and_replay() -> None:
    from connectors.secrets.notify import ReplayGuard, sign

    body = b'{"event": "rotated"}'
    now = str(int(time.time()))
    good = sign(WEBHOOK_KEY, now, "n1", body)
    assert verify_signature(WEBHOOK_KEY, now, "n1", body, good)
    assert not verify_signature(b"another-key", now, "n1", body, good)
    assert not verify_signature(WEBHOOK_KEY, now, "n1", body + b" ", good)
    assert not verify_signature(WEBHOOK_KEY, now, "n2", body, good), "the nonce is signed"
    old = str(int(time.time()) - 3600)
    assert not verify_signature(WEBHOOK_KEY, old, "n1", body, sign(WEBHOOK_KEY, old, "n1", body))
    guard = ReplayGuard()
    assert verify_signature(WEBHOOK_KEY, now, "n1", body, good, guard=guard)
    assert not verify_signature(WEBHOOK_KEY, now, "n1", body, good, guard=guard), "a replay within the window"


def test_engine_builds_from_policy(tmp_path: Path, api: ProtectedApi, env: None) -> None:
    from connectors.secrets.audit import AuditLog

    engine = RotationEngine.build(
        policy_for(tmp_path, api), audit=AuditLog(tmp_path / "a.jsonl"), state_dir=tmp_path / "st"
    )
    assert engine.bootstrap(actor="tester").outcome == "rotated"
    assert engine.bootstrap(actor="tester") is None  # already has a current version
    engine.close()
