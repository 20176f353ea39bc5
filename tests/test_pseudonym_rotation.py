"""Pseudonyms stay joinable across a rotation of their key (issue 17).

The key lives in Azure Key Vault (a local HTTPS server) under the rotation service. Two real
runs of one spec, with a rotation between them, under each policy: ``rekey`` (the rotation
writes an old -> new pseudonym map from the originals before promoting the new key; joining
through the map matches exactly the customers in both runs, while a direct join matches none)
and ``fixed_version`` (the spec pins a version, so the pseudonyms do not change and the pinned
version stays enabled). Each output's lineage names the key version that made it, in a facet
that validates against its schema. A pseudonymisation key without a rotation rule is refused.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from connectors.secrets.model import CURRENT, ENABLED
from connectors.secrets.policy import PolicyError, RotationPolicy
from connectors.secrets.registry import open_store
from connectors.secrets.service import RotationService
from pipelines.spec import PipelineSpec
from tests.openlineage_schema import event_problems
from tests.secret_servers import azure_config
from tests.servers.azure_keyvault import AzureKeyVaultServer

TOKEN = "pseudonym-test-bearer-token"
FIRST = [
    ("c1", "ann@example.com"),
    ("c2", "bob@example.com"),
    ("c3", "cy@example.com"),
    ("c4", "di@example.com"),
]
SECOND = [("c3", "cy@example.com"), ("c4", "di@example.com"), ("c5", "ed@example.com")]


@pytest.fixture(scope="module")
def keyvault() -> Iterator[AzureKeyVaultServer]:
    server = AzureKeyVaultServer(token=TOKEN)
    yield server
    server.close()


@pytest.fixture
def store(
    keyvault: AzureKeyVaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    monkeypatch.setenv("BW_TEST_AZURE_TOKEN", TOKEN)
    return azure_config(keyvault, name_prefix=f"{tmp_path.name.replace('_', '-')}-")


def _input(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "email"])
        writer.writerows(rows)
    return path


def _run(
    tmp_path: Path,
    label: str,
    rows: list[tuple[str, str]],
    key: dict[str, Any],
    key_id: bool = False,
) -> tuple[dict[str, str], dict]:
    """One run: customer id -> pseudonym in its output, and its lineage facet."""
    from pipelines.run import run_spec

    source = _input(tmp_path / f"{label}.csv", rows)
    spec = PipelineSpec.model_validate(
        {
            "name": f"pseudonyms_{label}",
            "sources": [
                {"name": "customers", "type": "file", "path": str(source), "format": "csv"}
            ],
            "steps": [
                {
                    "name": "protect",
                    "type": "mask",
                    "fields": [
                        {
                            "field": "email",
                            "strategy": "pseudonymize",
                            "key": {"store": key},
                            "key_id": key_id,
                        }
                    ],
                }
            ],
            "sinks": [
                {
                    "name": "out",
                    "type": "file",
                    "path": str(tmp_path / f"out-{label}"),
                    "format": "parquet",
                }
            ],
            "dead_letter": {"path": str(tmp_path / f"dead-{label}"), "format": "jsonl"},
            "lineage": {"event_log": str(tmp_path / f"events-{label}.jsonl")},
        }
    )
    summary = run_spec(spec)
    assert summary.reconciled
    table = pq.read_table(tmp_path / f"out-{label}")
    out = dict(
        zip(table.column("customer_id").to_pylist(), table.column("email").to_pylist(), strict=True)
    )
    events = [
        json.loads(line) for line in (tmp_path / f"events-{label}.jsonl").read_text().splitlines()
    ]
    complete = events[-1]
    assert complete["eventType"] == "COMPLETE" and event_problems(complete) == []
    sink = next(o for o in complete["outputs"] if "out-" in o["name"])
    return out, sink["facets"]["beamwright_pseudonymization"]


def _start(
    tmp_path: Path, store: dict[str, Any], name: str, on_rotation: str, **rule: Any
) -> tuple[RotationService, RotationPolicy, str]:
    """A rotation service managing pseudonymisation key ``name`` in ``store`` under
    ``on_rotation`` (plus the rest of the ``rule``), and the key's first current version."""
    policy = RotationPolicy.from_dict(
        {
            "secret": name,
            "store": store,
            "pseudonymization": True,
            "on_rotation": on_rotation,
            **rule,
        }
    )
    service = RotationService(tmp_path / "home", actor="test")
    service.start(policy)
    return service, policy, open_store(policy.store).stages(policy.secret).current


def test_rekey_map_joins_runs_across_a_rotation(tmp_path: Path, store: dict[str, Any]) -> None:
    name = "pii-email-key"
    service, _, v1 = _start(
        tmp_path,
        store,
        name,
        "rekey",
        rekey={
            "originals": [{"path": str(tmp_path / "first.csv"), "field": "email"}],
            "map_dir": str(tmp_path / "maps"),
            "key_id": True,
        },
    )
    first, facet1 = _run(tmp_path, "first", FIRST, {**store, "name": name}, key_id=True)
    assert facet1["fields"] == [
        {"field": "email", "step": "protect", "key_ref": f"azure:{name}", "key_version": v1}
    ]

    result = service.rotate(name)
    assert result.outcome == "rotated", result.reason
    v2 = result.version
    second, facet2 = _run(tmp_path, "second", SECOND, {**store, "name": name}, key_id=True)
    assert facet2["fields"][0]["key_version"] == v2 != v1

    assert all(p.startswith(f"{v1[:8]}:") for p in first.values())  # key_id: the version made it
    assert all(p.startswith(f"{v2[:8]}:") for p in second.values())
    assert not set(first.values()) & set(second.values()), "the rotation changed every pseudonym"
    with open(tmp_path / "maps" / f"{name}-{v1}-to-{v2}.csv", newline="") as f:
        mapping = {row["old_pseudonym"]: row["new_pseudonym"] for row in csv.DictReader(f)}
    assert len(mapping) == len(FIRST)
    matches = {
        (cid, cid2)
        for cid, old in first.items()
        for cid2, new in second.items()
        if mapping.get(old) == new
    }
    assert matches == {("c3", "c3"), ("c4", "c4")}  # exactly the customers in both runs
    audit = [line for line in service.audit_log(name) if line["action"] == "rekey_map"]
    assert audit and audit[0]["outcome"] == "ok"
    service.close()


def test_fixed_version_keeps_pseudonyms_and_the_pinned_version(
    tmp_path: Path, store: dict[str, Any]
) -> None:
    name = "pii-email-pinned"
    service, policy, v1 = _start(
        tmp_path, store, name, "fixed_version", refresh_interval=0.05, longest_bundle=0.05
    )
    pinned = {**store, "name": name, "ref": v1}
    first, facet1 = _run(tmp_path, "first", FIRST, pinned)
    result = service.rotate(name)
    assert result.outcome == "rotated" and result.previous == v1
    time.sleep(policy.overlap + 0.05)
    service.tick()  # past the overlap: a policy without fixed_version would disable v1 now
    info = open_store(store).describe(name)
    assert info.version(v1).state == ENABLED and info.stages[CURRENT] == result.version

    second, facet2 = _run(tmp_path, "second", SECOND, pinned)
    assert facet1["fields"][0]["key_version"] == facet2["fields"][0]["key_version"] == v1
    assert {c: first[c] for c in ("c3", "c4")} == {c: second[c] for c in ("c3", "c4")}
    assert first["c1"] not in second.values()
    service.close()


def test_a_pseudonymization_key_without_a_rotation_rule_is_refused(
    store: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.secrets_cli import main

    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps({"store": store, "pseudonymization": True}))
    code = main(
        [
            "secrets",
            "--home",
            str(tmp_path / "home"),
            "start",
            "pii-key",
            "--policy",
            str(policy_file),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (
        "policy 'pii-key': on_rotation: this secret is a pseudonymisation key" in err
        and "fixed_version" in err
    )
    assert not (tmp_path / "home").exists() or not any(
        (tmp_path / "home").rglob("*.json")
    )  # nothing registered
    with pytest.raises(PolicyError) as refused:
        RotationPolicy.from_dict({"secret": "pii-key", "store": store, "pseudonymization": True})
    error = refused.value
    assert error.where == "policy 'pii-key': on_rotation"
    assert "changes every pseudonym" in error.problem
    assert "on_rotation: rekey" in error.hint and "fixed_version" in error.hint
    with pytest.raises(PolicyError, match="did you mean 'rekey'"):
        RotationPolicy.from_dict(
            {"secret": "pii-key", "store": store, "pseudonymization": True, "on_rotation": "rekye"}
        )
    from pydantic import ValidationError

    from pipelines.steps.mask import MaskFieldSpec

    with pytest.raises(
        ValidationError, match="key_id applies to pseudonymize with a key from a store"
    ):
        MaskFieldSpec.model_validate(
            {"field": "email", "strategy": "pseudonymize", "key": {"env": "K"}, "key_id": True}
        )
    with pytest.raises(PolicyError, match="rekey.originals"):
        RotationPolicy.from_dict(
            {"secret": "pii-key", "store": store, "pseudonymization": True, "on_rotation": "rekey"}
        )
