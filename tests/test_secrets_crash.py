"""The crash matrix: a real ``beamwright secrets`` process is killed with SIGKILL at each recorded
step of a rotation, on every store, and one ``run --once`` must leave the store consistent.

Consistent means: exactly one ``current`` (enabled, readable), no ``pending``, every other
version disabled once its overlap ended, the protected API accepting only the current token
(every other minted token revoked), nothing left in flight or in the outbox, and the rotation's
notification delivered. The process dies by ``BEAMWRIGHT_SECRETS_CRASH_AT``: the engine sends
itself SIGKILL at that step, so no ``finally`` block or handler runs, exactly as with kill -9.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.secrets.engine import CRASH_ENV
from connectors.secrets.model import CURRENT, ENABLED, PENDING
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.registry import open_store
from connectors.secrets.service import RotationService
from pipelines.secrets_cli import main
from tests.secret_servers import PROVIDERS, StoreServers
from tests.servers.api import ProtectedApi
from tests.servers.notify import WebhookReceiver

ROOT = Path(__file__).parent.parent
WEBHOOK_KEY = b"crash-matrix-webhook-key-0123456"
STEPS = ("added", "created", "verified", "promoted", "notify", "disable")
OVERLAP = 0.6


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(WEBHOOK_KEY)
    yield receiver
    receiver.close()


@pytest.fixture
def webhook_key() -> bytes:
    return WEBHOOK_KEY


def policy(name: str, store: dict[str, Any], api: ProtectedApi, webhook: WebhookReceiver) -> RotationPolicy:
    return RotationPolicy.from_dict(
        {
            "secret": name,
            "store": store,
            "refresh_interval": 0.15,
            "longest_bundle": 0.2,
            "overlap": OVERLAP,
            "issuer": api.issuer_config(),
            "verifier": api.verifier_config(),
            "notify": [{"type": "webhook", "url": webhook.url, "key": {"env": "BW_TEST_WEBHOOK_KEY"}}],
        }
    )


def killed_cli(home: Path, env: dict[str, str], step: str, *argv: str) -> None:
    """Run ``beamwright secrets`` in a subprocess that SIGKILLs itself at ``step``."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.secrets_cli", "secrets", "--home", str(home), *argv],
        env={**env, CRASH_ENV: step},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == -9, f"expected a SIGKILL at {step}, got {done.returncode}: {done.stderr[-2000:]}"


def assert_consistent(store: Any, name: str, api: ProtectedApi, minted_before: set[str]) -> str:
    """Exactly one enabled current, no pending, nothing else enabled; only current is valid
    at the API among the tokens this rotation concerned. Returns the current version."""
    info = store.describe(name)
    current = info.at(CURRENT)
    assert current is not None and current.state == ENABLED, f"no enabled current: {info.stages}"
    assert PENDING not in info.stages, f"orphan pending: {info.stages}"
    enabled = [v.version for v in info.versions if v.state == ENABLED]
    assert enabled == [current.version], f"versions still enabled besides current: {enabled}"
    value = store.access(name, CURRENT).secret.reveal().decode()
    concerned = (set(api.all_tokens()) - minted_before) | {value}
    valid = {t for t in concerned if api.valid(t)}
    assert valid == {value}, "every token but current's must be revoked"
    return current.version


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("kind", PROVIDERS)
def test_kill_at_each_step_then_run_once_is_consistent(
    kind: str,
    step: str,
    tmp_path: Path,
    servers: StoreServers,
    api: ProtectedApi,
    webhook: WebhookReceiver,
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"crash-{uuid.uuid4().hex[:10]}"
    store_config = servers.config(kind, str(tmp_path / "store"), f"crash{uuid.uuid4().hex[:8]}")
    home = tmp_path / "home"
    service = RotationService(home, actor="crash-test")
    initial = service.start(policy(name, store_config, api, webhook))
    assert initial is not None and initial.outcome == "rotated"
    service.close()
    store = open_store(store_config)
    first = store.access(name, CURRENT)
    minted_before = set(api.all_tokens()) - {first.secret.reveal().decode()}

    if step == "disable":
        assert main(["secrets", "--home", str(home), "rotate", name]) == 0
        time.sleep(OVERLAP + 0.1)
        killed_cli(home, env, step, "run", "--once")  # killed between revoking and disabling
    else:
        killed_cli(home, env, step, "rotate", name)
    state = json.loads((home / "state" / f"{name}.json").read_text())
    if step == "added":  # the version exists in the store, its id is not in the state
        assert state["rotation"]["step"] == "create" and state["rotation"].get("fingerprint")
    elif step in ("created", "verified", "promoted"):
        assert state["rotation"]["step"] in ("created", "verified"), "the step was recorded before dying"
    else:
        assert state["rotation"] is None and (state["retiring"] or step == "disable")

    # an unverified version whose id was lost is rolled back (exit 1: no rotation happened)
    resumed = main(["secrets", "--home", str(home), "run", "--once"])
    assert resumed == (1 if step == "added" else 0), capsys.readouterr()
    time.sleep(OVERLAP + 0.1)
    assert main(["secrets", "--home", str(home), "run", "--once"]) == 0, capsys.readouterr()

    current = assert_consistent(store, name, api, minted_before)
    if step == "added":
        assert current == first.version, "the half-created rotation was rolled back"
        audit = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
        assert any(line["action"] == "discard_pending" and line["outcome"] == "ok" for line in audit)
        store.close()
        return
    assert current != first.version, "the interrupted rotation was finished, not lost"
    state = json.loads((home / "state" / f"{name}.json").read_text())
    assert state["rotation"] is None and state["retiring"] == {} and state["outbox"] == []
    audit = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    promoted = {line["version"] for line in audit if line["action"] == "promote" and line["outcome"] == "ok"}
    assert current in promoted
    delivered = [
        json.loads(r["body"]) for r in webhook.received if r["valid"] and json.loads(r["body"])["secret"] == name
    ]
    assert any(n["event"] == "rotated" and n["version"] == current for n in delivered), "notified after the crash"
    store.close()
