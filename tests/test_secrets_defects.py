"""Issue 9's measured defects, each against real servers, plus the smaller findings.

1. AWS: the second rotation destroyed AWSCURRENT (AWSPENDING left on the first version).
2. A rotation interrupted during a slow webhook left ``previous`` valid forever.
3. An issuer's revoke error carrying the value went to the audit log in clear, silently.
4. Two service homes on one store raced (see ``test_secrets_concurrency.py``); the default home
   depended on the current directory.
5. Reactive rotation was unauthenticated and unlimited.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.secrets import Secret
from connectors.secrets.model import CURRENT, ENABLED, PENDING, PREVIOUS, SecretConflict
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.registry import open_store
from connectors.secrets.reporting import AuthFailure, InboxReporter
from connectors.secrets.service import RotationService
from pipelines.secrets_cli import main
from tests.secret_servers import PROVIDERS, StoreServers
from tests.servers.api import ProtectedApi
from tests.servers.notify import WebhookReceiver

ROOT = Path(__file__).parent.parent
WEBHOOK_KEY = b"defects-webhook-key-0123456789ab"
CANARY = "CANARY-" + uuid.uuid4().hex


@pytest.fixture
def webhook_key() -> bytes:
    return WEBHOOK_KEY


def make_policy(name: str, store: dict[str, Any], **fields: Any) -> RotationPolicy:
    data: dict[str, Any] = {"secret": name, "store": store, "refresh_interval": 0.1, "longest_bundle": 0.05}
    data.update(fields)
    return RotationPolicy.from_dict(data)


def fresh() -> str:
    return f"d-{uuid.uuid4().hex[:10]}"


def texts_under(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- defect 1


def test_aws_second_and_third_rotations_keep_awscurrent(servers: StoreServers, env: dict[str, str], tmp_path: Path) -> None:
    config = servers.config("aws", "", "")
    name = fresh()
    service = RotationService(tmp_path / "home", actor="tester")
    assert service.start(make_policy(name, config)).outcome == "rotated"
    import boto3

    client = boto3.client("secretsmanager", endpoint_url=config["endpoint_url"], region_name="us-east-1")
    labels = client.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert [sorted(v) for v in labels.values()] == [["AWSCURRENT"]], "AWSPENDING must not stay on the first version"

    store = open_store(config)
    for _ in range(2):
        before = store.access(name, CURRENT)
        result = service.rotate(name)
        assert result.outcome == "rotated", result.reason
        assert result.previous == before.version
        assert store.access(name, CURRENT).version == result.version
    status = service.status(name)[0]
    assert status.current is not None and status.current.version == result.version and status.pending is None
    assert service.start(make_policy(name, config)) is None  # already has a current version
    labels = client.describe_secret(SecretId=name)["VersionIdsToStages"]
    assert sorted(sorted(v) for v in labels.values() if v) == [["AWSCURRENT"], ["AWSPREVIOUS"]]
    service.close()


# --------------------------------------------------------------------------- defect 2


@pytest.mark.parametrize("kind", PROVIDERS)
def test_kill_during_a_slow_webhook_still_disables_previous(
    kind: str, servers: StoreServers, api: ProtectedApi, env: dict[str, str], tmp_path: Path
) -> None:
    slow = WebhookReceiver(WEBHOOK_KEY)
    name = fresh()
    config = servers.config(kind, str(tmp_path / "store"), f"slow{uuid.uuid4().hex[:8]}")
    home = tmp_path / "home"
    policy = make_policy(
        name,
        config,
        overlap=0.5,
        issuer=api.issuer_config(),
        notify=[{"type": "webhook", "url": slow.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}, "timeout": 60}],
    )
    service = RotationService(home, actor="tester")
    service.start(policy)
    store = open_store(config)
    service.close()
    state_file = home / "state" / f"{name}.json"
    first = store.access(name, CURRENT)
    slow.delay, arrivals = 30, slow.arrivals

    child = subprocess.Popen(
        [sys.executable, "-m", "pipelines.secrets_cli", "secrets", "--home", str(home), "rotate", name],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while slow.arrivals == arrivals:
        assert time.monotonic() < deadline and child.poll() is None, "the webhook was never called"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)  # kill -9 while the webhook holds the call
    child.wait()

    state = json.loads(state_file.read_text())
    assert first.version in state["retiring"], "the disable must be durable before notifications"
    assert any(item["note"]["event"] == "rotated" for item in state["outbox"])
    slow.delay = 0
    time.sleep(0.6)
    assert main(["secrets", "--home", str(home), "run", "--once"]) == 0
    assert not api.valid(first.secret.reveal().decode()), "previous was revoked after its overlap"
    info = store.describe(name)
    assert info.version(first.version).state != ENABLED and PREVIOUS not in info.stages
    delivered = [json.loads(r["body"]) for r in slow.received if r["valid"]]
    assert any(n["event"] == "rotated" and n["previous"] == first.version for n in delivered)
    assert json.loads(state_file.read_text())["outbox"] == []
    slow.close()
    store.close()


# --------------------------------------------------------------------------- defect 3

REVOKE_FAILS = {"on": True}


def issue_value(name: str) -> str:
    """Issuer hook for the tests: a fresh random value."""
    return "val-" + uuid.uuid4().hex


def revoke_echoing(name: str, secret: Secret) -> None:
    """Issuer hook whose error echoes the credential, as careless APIs do."""
    if REVOKE_FAILS["on"]:
        raise RuntimeError(f"revocation refused for token {secret.reveal().decode()}")


def test_revoke_error_with_the_value_is_redacted_alerted_and_retried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    webhook = WebhookReceiver(WEBHOOK_KEY)
    name = fresh()
    home = tmp_path / "home"
    config = {"type": "file", "path": str(tmp_path / "store")}
    policy = make_policy(
        name,
        config,
        overlap=0.3,
        issuer={"type": "callable", "issue": f"{__name__}:issue_value", "revoke": f"{__name__}:revoke_echoing"},
        notify=[{"type": "webhook", "url": webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}}],
    )
    service = RotationService(home, actor="tester")
    service.start(policy)
    store = open_store(config)
    first = store.access(name, CURRENT)
    service.rotate(name)
    REVOKE_FAILS["on"] = True
    time.sleep(0.35)
    assert main(["secrets", "--home", str(home), "run", "--once"]) == 1, "a failed revocation is not success"
    time.sleep(0.15)  # retried after one refresh interval
    assert main(["secrets", "--home", str(home), "run", "--once"]) == 1
    out = capsys.readouterr()
    value = first.secret.reveal().decode()
    assert value not in texts_under(home) and value not in out.out + out.err
    failed = [line for line in service.audit_log(name) if line["action"] == "disable_previous"]
    assert [line["outcome"] for line in failed] == ["failed", "failed"] and "[redacted]" in failed[0]["detail"]
    info = store.describe(name)
    assert PREVIOUS not in info.stages, "consumers no longer fall back to it"
    alerts = [n for n in webhook.events() if n["event"] == "failed"]
    assert len(alerts) == 1 and alerts[0]["version"] == first.version, "alerted once, not on every run"
    assert value not in json.dumps([r["body"].decode() for r in webhook.received])

    REVOKE_FAILS["on"] = False
    time.sleep(0.15)
    assert main(["secrets", "--home", str(home), "run", "--once"]) == 0
    assert store.describe(name).version(first.version).state != ENABLED
    webhook.close()
    store.close()


# --------------------------------------------------------------------------- defect 4 (home)


def test_default_home_is_the_users_state_directory_with_private_files(tmp_path: Path, env: dict[str, str]) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    state = tmp_path / "xdg"
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.secrets_cli", "secrets", "start", "homed", "--no-reactive"],
        env={**env, "XDG_STATE_HOME": str(state), "BEAMWRIGHT_SECRETS_HOME": ""},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == [], "nothing is written to the current directory"
    home = state / "beamwright"
    assert (home / "policies" / "homed.json").exists() and (home / "audit.jsonl").exists()
    for path in [home, *home.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} is {oct(mode)}"


# --------------------------------------------------------------------------- defect 5


def test_reactive_reports_are_authenticated_checked_and_rate_limited(
    tmp_path: Path, api: ProtectedApi, env: dict[str, str]
) -> None:
    name = fresh()
    config = {"type": "file", "path": str(tmp_path / "store")}
    service = RotationService(tmp_path / "home", actor="tester")
    service.start(
        make_policy(name, config, issuer=api.issuer_config(), verifier=api.verifier_config())
    )
    store = open_store(config)
    current = store.access(name, CURRENT)
    api.revoke(current.secret.reveal().decode())  # current really is rejected now

    def failure(version: str, fingerprint: str) -> AuthFailure:
        return AuthFailure(name, version, fingerprint, "worker:test", time.time(), "HTTP 401")

    # five forged lines, as anyone able to append to the inbox could write
    with open(service.inbox, "a") as inbox:
        for _ in range(5):
            inbox.write(json.dumps(failure(current.version, current.secret.fingerprint).__dict__) + "\n")
    assert service.tick() == []
    # signed with a key that is not the report key
    forger_key = tmp_path / "forged.key"
    forger_key.write_text("not-the-report-key")
    InboxReporter(str(service.inbox), type(service.report_key)(str(forger_key))).report(
        failure(current.version, current.secret.fingerprint)
    )
    assert service.tick() == []
    # properly signed, but the fingerprint is not the version's
    reporter = service.reporter()
    reporter.report(failure(current.version, "0123456789ab"))
    assert service.tick() == []
    # five genuine reports: one rotation, then min_interval holds
    for _ in range(5):
        reporter.report(failure(current.version, current.secret.fingerprint))
    results = service.tick()
    assert [(r.trigger, r.outcome) for r in results] == [("reactive", "rotated")]
    new = store.access(name, CURRENT)
    api.revoke(new.secret.reveal().decode())
    reporter.report(failure(new.version, new.secret.fingerprint))
    assert service.tick() == [], "at most one reactive rotation per min_interval"
    outcomes = [
        (line["action"], line["outcome"])
        for line in service.audit_log(name)
        if line["action"] in ("auth_failure", "refresh_check") and line["outcome"] != "reported"
    ]
    assert outcomes.count(("auth_failure", "rejected")) == 6
    assert ("refresh_check", "ignored") in outcomes and ("refresh_check", "skipped") in outcomes
    service.close()


# --------------------------------------------------------------------------- smaller findings


def test_a_replayed_webhook_is_rejected(tmp_path: Path, env: dict[str, str]) -> None:
    webhook = WebhookReceiver(WEBHOOK_KEY)
    service = RotationService(tmp_path / "home", actor="tester")
    notify = [{"type": "webhook", "url": webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}}]
    service.start(make_policy("hooked", {"type": "file", "path": str(tmp_path / "s")}, notify=notify))
    original = webhook.received[0]
    assert original["valid"]
    replay = urllib.request.Request(webhook.url, data=original["body"], method="POST", headers=original["headers"])
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(replay, timeout=5)
    assert refused.value.code == 401 and not webhook.received[-1]["valid"]
    webhook.close()
    service.close()


def test_start_on_an_existing_name_shows_the_diff_and_needs_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["secrets", "--home", str(tmp_path / "home"), "start", "svc", "--refresh-interval", "1s", "--longest-bundle", "1s"]
    assert main(base) == 0
    assert main(base) == 0, "the same policy again is fine"
    capsys.readouterr()
    assert main([*base, "--overlap", "10s"]) == 2
    err = capsys.readouterr().err
    assert "--replace" in err and "overlap: 3.0 -> 10.0" in err
    assert main([*base, "--overlap", "10s", "--replace"]) == 0
    service = RotationService(tmp_path / "home")
    assert service.policy("svc").overlap == 10
    assert any("replaced: overlap" in (line["detail"] or "") for line in service.audit_log("svc"))


def test_a_store_outage_at_run_is_a_failed_round_not_an_invalid_spec(
    servers: StoreServers, tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str]
) -> None:
    home = tmp_path / "home"
    config = {**servers.config("gcp", "", "outage"), "timeout": 1}
    RotationService(home).start(make_policy("outage", config, schedule="* * * * * *"))
    capsys.readouterr()
    servers.gsm.stop()
    try:
        time.sleep(1.05)
        assert main(["secrets", "--home", str(home), "run", "--once"]) == 1
    finally:
        servers.gsm.start()
    out = capsys.readouterr().out
    assert "outage: failed" in out and "unavailable" in out


def test_gcp_without_credentials_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))
    store = json.dumps({"type": "gcp", "project": "p"})
    code = main(["secrets", "--home", str(tmp_path / "home"), "start", "k", "--store", store])
    err = capsys.readouterr().err
    assert code == 2 and "no Google credentials" in err and "Traceback" not in err


def verify_echoing(name: str, secret: Secret) -> None:
    """Verifier hook whose failure message quotes the credential."""
    raise RuntimeError(f"login failed with {secret.reveal().decode()}")


def canary_issue(name: str) -> str:
    """Issuer hook handing out the canary value."""
    return CANARY


def canary_revoke(name: str, secret: Secret) -> None:
    """Issuer hook whose revocation always fails, echoing the value."""
    raise RuntimeError(f"cannot revoke {secret.reveal().decode()}")


def test_a_canary_value_never_leaves_through_any_error_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary is a value the engine handles, or a credential in a URL; every provider,
    issuer, verifier and notifier error path runs, and the canary appears nowhere."""
    webhook = WebhookReceiver(WEBHOOK_KEY)
    home = tmp_path / "home"
    store = {"type": "file", "path": str(tmp_path / "store")}
    good_hook = {"type": "webhook", "url": webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}}
    leaky_hook = {"type": "webhook", "url": f"http://127.0.0.1:9/hook?token={CANARY}", "key": {"env": "BW_TEST_WEBHOOK_KEY"}}
    canary_issuer = {"type": "callable", "issue": f"{__name__}:canary_issue", "revoke": f"{__name__}:canary_revoke"}
    monkeypatch.setenv("BW_TEST_CANARY", CANARY)
    cases = {
        # verifier quotes the new value -> rollback, revoke fails quoting it too
        "verifier": make_policy("v", store, issuer=canary_issuer, verifier={"type": "callable", "path": f"{__name__}:verify_echoing"}, notify=[good_hook, leaky_hook]),
        # HTTP verifier whose URL carries a credential, unreachable
        "verifier-url": make_policy("u", store, issuer=canary_issuer, verifier={"type": "http", "url": f"http://127.0.0.1:9/health?key={CANARY}", "timeout": 1}, notify=[good_hook]),
        # HTTP issuer with userinfo in its URL, unreachable
        "issuer-url": make_policy("i", store, issuer={"type": "http", "mint_url": f"http://admin:{CANARY}@127.0.0.1:9/mint", "revoke_url": "http://127.0.0.1:9/r", "admin": {"env": "BW_TEST_CANARY"}, "timeout": 1}, notify=[good_hook]),
        # provider: Vault whose token is the canary, behind a URL with the canary as userinfo
        "provider": make_policy("p", {"type": "vault", "url": f"http://user:{CANARY}@127.0.0.1:9", "token_env": "BW_TEST_CANARY", "timeout": 1}, notify=[good_hook]),
        # retire: the canary value's revocation fails after the overlap
        "retire": make_policy("r", store, issuer=canary_issuer, overlap=0.3, notify=[good_hook]),
        # a webhook whose URL carries a credential, given as a reference: works, never written
        "url-reference": make_policy("h", store, notify=[{**good_hook, "url": {"env": "BW_TEST_HOOK_URL"}}]),
    }
    monkeypatch.setenv("BW_TEST_HOOK_URL", f"{webhook.url}?token={CANARY}")
    for case, policy in cases.items():
        assert main(["secrets", "--home", str(home), "start", policy.secret, "--policy", str(_write(tmp_path, case, policy))]) in (0, 1)
    assert main(["secrets", "--home", str(home), "rotate", "r"]) == 0  # the canary value becomes previous
    time.sleep(0.35)
    for _ in range(2):
        main(["secrets", "--home", str(home), "run", "--once"])
        main(["secrets", "--home", str(home), "status"])
        main(["secrets", "--home", str(home), "audit"])
    out = capsys.readouterr()
    audit = (home / "audit.jsonl").read_text()
    assert "[redacted]" in audit
    assert any(json.loads(r["body"])["secret"] == "h" for r in webhook.received if r["valid"])
    assert CANARY not in (home / "policies" / "h.json").read_text()
    for where, text in {
        "stdout": out.out,
        "stderr": out.err,
        "audit": audit,
        "state": texts_under(home / "state"),
        "webhooks": json.dumps([r["body"].decode() for r in webhook.received]),
    }.items():
        assert CANARY not in text, f"the canary leaked into {where}"
    webhook.close()


def _write(tmp_path: Path, case: str, policy: RotationPolicy) -> Path:
    path = tmp_path / f"{case}.json"
    data = policy.to_dict()
    data.pop("secret")
    path.write_text(json.dumps(data))
    return path


def test_last_known_good_has_a_maximum_staleness(servers: StoreServers) -> None:
    from transforms.credentials import Credentials, CredentialUnavailable

    name = fresh()
    config = servers.config("gcp", "", "stale")
    store = open_store(config)
    store.ensure(name)
    store.promote(name, store.add_version(name, Secret(b"lkg-value")), expect_current=None)
    creds = Credentials(config, name, refresh_interval=0.1, max_staleness=1.0)
    assert creds.current().secret.reveal() == b"lkg-value"
    servers.gsm.stop()
    try:
        time.sleep(0.2)
        assert creds.current().secret.reveal() == b"lkg-value"  # within max_staleness
        time.sleep(1.0)
        with pytest.raises(CredentialUnavailable, match="max_staleness"):
            creds.current()
    finally:
        servers.gsm.start()
    time.sleep(0.15)
    deadline = time.monotonic() + 10
    while True:
        try:
            assert creds.current().secret.reveal() == b"lkg-value"  # the store confirmed it again
            break
        except CredentialUnavailable:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    store.close()


@pytest.mark.parametrize("kind", PROVIDERS)
def test_an_expired_current_is_flagged_and_refused_unless_allowed(
    kind: str, servers: StoreServers, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transforms.credentials import Credentials, CredentialUnavailable

    home, name = tmp_path / "home", fresh()
    config = servers.config(kind, str(tmp_path / "s"), f"exp{uuid.uuid4().hex[:8]}")
    RotationService(home).start(make_policy(name, config, issuer={"type": "random", "ttl": 1.5}))
    expires = Credentials(config, name, refresh_interval=0.1).current().expire_time
    assert expires is not None  # the store reports the expiry
    time.sleep(max(0.0, expires.timestamp() - time.time()) + 0.05)
    capsys.readouterr()
    assert main(["secrets", "--home", str(home), "status", name]) == 0
    assert "EXPIRED" in capsys.readouterr().out
    assert main(["secrets", "--home", str(home), "status", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["current"]["expired"] is True
    with pytest.raises(CredentialUnavailable, match="expired"):
        Credentials(config, name, refresh_interval=0.1).current()
    value = Credentials(config, name, refresh_interval=0.1, allow_expired=True).current()
    assert value.version == open_store(config).stages(name).current


@pytest.mark.parametrize("kind", PROVIDERS)
def test_stage_changes_are_compare_and_set_in_every_store(
    kind: str, servers: StoreServers, env: dict[str, str], tmp_path: Path
) -> None:
    """The store primitives the engine relies on refuse instead of overwriting."""
    store = open_store(servers.config(kind, str(tmp_path / "store"), f"cas{uuid.uuid4().hex[:8]}"))
    name = fresh()
    store.ensure(name)
    v1 = store.add_version(name, Secret(b"cas-one"))
    store.promote(name, v1, expect_current=None)
    v2 = store.add_version(name, Secret(b"cas-two"))
    with pytest.raises(SecretConflict):
        store.add_version(name, Secret(b"cas-three"))  # pending is taken
    with pytest.raises(SecretConflict):
        store.promote(name, v2, expect_current="0" * 32)  # current is not what the rotation saw
    with pytest.raises(SecretConflict):
        store.disable(name, v1)  # never a disabled current
    assert store.clear_stage(name, PENDING, v2) and not store.clear_stage(name, PENDING, v2)
    with pytest.raises(SecretConflict):
        store.promote(name, v2, expect_current=v1)  # no longer pending: someone discarded it
    info = store.describe(name)
    assert info.stages == {CURRENT: v1} and info.at(CURRENT).state == ENABLED
    store.close()


def test_gcp_gets_rotation_schedule_and_topics(servers: StoreServers, tmp_path: Path) -> None:
    import grpc
    from google.cloud import secretmanager_v1
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    config = servers.config("gcp", "", "rot")
    topic = "projects/rot/topics/secret-events"
    RotationService(tmp_path / "home").start(make_policy("rotating", config, schedule="0 3 * * *", topics=[topic]))
    channel = grpc.insecure_channel(servers.gsm.address)
    client = secretmanager_v1.SecretManagerServiceClient(transport=SecretManagerServiceGrpcTransport(channel=channel))
    secret = client.get_secret(name="projects/rot/secrets/rotating")
    assert [t.name for t in secret.topics] == [topic]
    assert secret.rotation.rotation_period.total_seconds() == 86400
    next_time = secret.rotation.next_rotation_time
    assert (next_time.hour, next_time.minute) == (3, 0) and next_time.timestamp() > time.time()
    channel.close()
