"""Two rotation services (two homes, so two local locks that know nothing of each other) rotate
the same secret in the same store at once, 50 times each, on every store.

Only the store's own compare-and-set keeps them apart. Throughout, a watcher reads the store:
``current`` is never a disabled version. Afterwards: no two promotions started from the same
``current`` (two pendings were never both promoted: the promotions form one chain), every
rotation that did not win reported ``conflict`` (audited, never silently), and the store is
consistent (one enabled current, no pending).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from connectors.secrets.model import CURRENT, ENABLED, PENDING, SecretError
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.registry import open_store
from connectors.secrets.service import RotationService
from tests.secret_servers import PROVIDERS, StoreServers

ROUNDS = 50


@pytest.mark.parametrize("kind", PROVIDERS)
def test_two_homes_rotating_one_secret_never_promote_twice_nor_a_disabled_version(
    kind: str, tmp_path: Path, servers: StoreServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in servers.environment().items():
        monkeypatch.setenv(key, value)
    name = f"race-{uuid.uuid4().hex[:10]}"
    store_config = servers.config(kind, str(tmp_path / "store"), f"race{uuid.uuid4().hex[:8]}")
    policy = RotationPolicy.from_dict(
        {"secret": name, "store": store_config, "refresh_interval": 0.05, "longest_bundle": 0.05}
    )
    homes = [RotationService(tmp_path / f"home-{h}", actor=f"home-{h}") for h in "ab"]
    assert homes[0].start(policy).outcome == "rotated"
    assert homes[1].start(policy) is None  # the secret already has a current version

    watcher_store = open_store(store_config)
    violations: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                info = watcher_store.describe(name)
            except SecretError:
                continue
            current = info.at(CURRENT)
            if current is None or current.state != ENABLED:
                violations.append(f"current {info.stages.get(CURRENT)} is {current and current.state}")

    outcomes: dict[str, Counter[str]] = {}

    def rotate(service: RotationService) -> None:
        counts: Counter[str] = Counter()
        for _ in range(ROUNDS):
            counts[service.rotate(name).outcome] += 1
        outcomes[service.actor] = counts

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    workers = [threading.Thread(target=rotate, args=(s,)) for s in homes]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=300)
    done.set()
    watcher.join(timeout=10)

    assert violations == [], violations[:5]
    total = outcomes["home-a"] + outcomes["home-b"]
    assert set(total) <= {"rotated", "conflict"}, total
    assert total["rotated"] + total["conflict"] == 2 * ROUNDS
    assert total["conflict"] > 0, "the homes never actually raced"

    audit = [line for s in homes for line in s.audit_log(name)]
    promotions = [line for line in audit if line["action"] == "promote" and line["outcome"] == "ok"]
    assert len(promotions) == total["rotated"] + 1  # + the initial rotation
    starts = Counter(line["detail"] for line in promotions)  # "previous=<the current it replaced>"
    assert max(starts.values()) == 1, f"two promotions from one current: {starts.most_common(2)}"
    conflicts = [line for line in audit if line["outcome"] == "conflict"]
    assert len(conflicts) >= total["conflict"], "every conflict is in an audit log"

    time.sleep(policy.overlap + 0.05)
    for service in homes:  # each home retires what it demoted
        service.tick()
    info = watcher_store.describe(name)
    assert info.at(CURRENT).state == ENABLED and PENDING not in info.stages
    enabled = [v.version for v in info.versions if v.state == ENABLED]
    assert enabled == [info.stages[CURRENT]], f"left enabled: {enabled}"
    print(f"\n{kind}: {dict(outcomes['home-a'])} / {dict(outcomes['home-b'])}, 0 violations")
    watcher_store.close()
    for service in homes:
        service.close()
