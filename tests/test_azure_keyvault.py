"""Azure Key Vault beyond the provider contract (which tests/test_secrets_providers.py and the
rotation matrices run on every store): the provider chain, credentials and configs, and a
canary value that appears nowhere (logs, lineage, outputs, dead letters, errors, files) on any
path, failing ones included: a refused token, an unknown name, a disabled version, an outage."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import BeamwrightError
from connectors.secrets import Secret, SecretError
from connectors.secrets.model import SecretUnavailable
from connectors.secrets.policy import RotationPolicy
from connectors.secrets.pseudonyms import pseudonym
from connectors.secrets.registry import create_provider, open_source, open_store
from connectors.secrets.service import RotationService
from pipelines.spec import PipelineSpec
from tests.secret_servers import azure_config
from tests.servers.azure_keyvault import AzureKeyVaultServer

TOKEN = "keyvault-test-bearer-token"
CANARY = "canary-7f3a9c-never-print-me-5b2e"


@pytest.fixture
def keyvault() -> Iterator[AzureKeyVaultServer]:
    """A server of its own per test: tests take it down."""
    server = AzureKeyVaultServer(token=TOKEN)
    yield server
    server.close()


@pytest.fixture
def config(keyvault: AzureKeyVaultServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("BW_TEST_AZURE_TOKEN", TOKEN)
    return azure_config(keyvault, timeout=2)


def _put(config: dict[str, Any], name: str, value: bytes) -> str:
    store = open_store(config)
    try:
        version = store.add_version(name, Secret(value))
        store.promote(name, version)
    finally:
        store.close()
    return version


def test_chain_falls_through_on_not_found_only(
    config: dict[str, Any], keyvault: AzureKeyVaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put(config, "db-password", b"from-key-vault")
    monkeypatch.setenv("DB_PASSWORD", "stale-from-env")
    monkeypatch.setenv("API_TOKEN", "from-env")
    chain = [config, {"type": "env"}]
    source = open_source(chain)
    assert source.access("db-password").secret.reveal() == b"from-key-vault"
    assert source.access("api-token").secret.reveal() == b"from-env"  # not in Key Vault
    keyvault.stop()
    with pytest.raises(SecretUnavailable):  # an outage never falls through to a stale value
        source.access("db-password")
    keyvault.start()
    assert source.access("db-password").secret.reveal() == b"from-key-vault"
    source.close()


def test_credentials_and_configs_are_checked(
    config: dict[str, Any], keyvault: AzureKeyVaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SecretError, match="unknown option.*vault_uri"):
        create_provider({**config, "vault_uri": "x"})
    with pytest.raises(SecretError, match="BW_TEST_NO_TOKEN"):
        create_provider({**config, "token_env": "BW_TEST_NO_TOKEN"})
    with pytest.raises(SecretError, match="unknown credential 'managed'"):
        create_provider(
            {k: v for k, v in config.items() if k != "token_env"} | {"credential": "managed"}
        )
    with pytest.raises(SecretError, match="letters, digits and '-'"):
        create_provider(config).access("db_password")
    monkeypatch.setenv("BW_TEST_WRONG_TOKEN", "not-the-token")
    with pytest.raises(SecretError, match="refused the credential"):
        create_provider({**config, "token_env": "BW_TEST_WRONG_TOKEN"}).access("db-password")
    assert keyvault.calls["unauthorized"] >= 1  # the SDK sent the token after the challenge


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")


def _spec(tmp_path: Path, key: dict[str, Any]) -> PipelineSpec:
    tmp_path.mkdir(exist_ok=True)
    source = tmp_path / "customers.jsonl"
    source.write_text(
        '{"id": 1, "email": "ann@example.com"}\n{"id": 2, "email": \n'
    )  # 2nd: dead letter
    return PipelineSpec.model_validate(
        {
            "name": "canary",
            "run": {"error_threshold": 1.0},
            "sources": [
                {"name": "customers", "type": "file", "path": str(source), "format": "jsonl"}
            ],
            "steps": [
                {
                    "name": "protect",
                    "type": "mask",
                    "fields": [
                        {"field": "email", "strategy": "pseudonymize", "key": {"store": key}}
                    ],
                }
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl"},
            "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        }
    )


def test_canary_never_leaks_on_any_path(
    config: dict[str, Any],
    keyvault: AzureKeyVaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.run import run_spec

    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)  # the SDK's HTTP logging included
    errors: list[str] = []

    def failing(call: Any) -> None:
        try:
            call()
        except BeamwrightError as exc:
            errors.append(f"{type(exc).__name__}: {exc!r} {exc}")
        else:
            raise AssertionError("expected a failure")

    try:
        name = "pii-canary-key"
        canary_version = _put(config, name, CANARY.encode())
        key = {**config, "name": name}
        # a rotation through the service: audit log and state files under tmp_path
        service = RotationService(tmp_path / "home", actor="test")
        policy = RotationPolicy.from_dict(
            {
                "secret": name,
                "store": config,
                "pseudonymization": True,
                "on_rotation": "fixed_version",
            }
        )
        service.start(policy)
        rotated = service.rotate(name)
        assert rotated.outcome == "rotated" and rotated.previous == canary_version
        service.close()
        # the canary (pinned) makes pseudonyms in a run with a dead letter
        run_spec(_spec(tmp_path, {**key, "ref": canary_version}))
        written = [
            json.loads(line)
            for f in (tmp_path / "out").rglob("*.jsonl")
            for line in f.read_text().splitlines()
        ]
        assert written == [{"id": 1, "email": pseudonym(CANARY.encode(), b"ann@example.com")}]
        assert any((tmp_path / "dead").rglob("*.jsonl"))

        monkeypatch.setenv("BW_TEST_WRONG_TOKEN", "not-the-token")
        wrong = {**key, "token_env": "BW_TEST_WRONG_TOKEN", "ref": canary_version}
        failing(lambda: run_spec(_spec(tmp_path / "auth", wrong)))
        failing(lambda: run_spec(_spec(tmp_path / "missing", {**key, "name": "no-such-key"})))
        store = open_store(config)
        store.disable(name, canary_version)
        failing(lambda: store.access(name, canary_version))
        failing(lambda: run_spec(_spec(tmp_path / "disabled", {**key, "ref": canary_version})))
        store.enable(name, canary_version)
        keyvault.stop()
        failing(lambda: store.access(name, canary_version))
        failing(lambda: run_spec(_spec(tmp_path / "down", {**key, "ref": canary_version})))
        store.close()
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)

    assert len(errors) == 6
    assert any("disabled" in e for e in errors) and any("unavailable" in e for e in errors)
    assert any("refused the credential" in e for e in errors) and any(
        "not found" in e for e in errors
    )
    haystacks = {"logs": "\n".join(capture.lines), "errors": "\n".join(errors)}
    for path in tmp_path.rglob("*"):
        if path.is_file():
            haystacks[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any(n.endswith("audit.jsonl") for n in haystacks) and any("dead" in n for n in haystacks)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    facet = next(o for o in events[-1]["outputs"] if "out" in o["name"])["facets"][
        "beamwright_pseudonymization"
    ]
    assert facet["fields"][0]["key_version"] == canary_version
    assert any("azure.core" in line for line in capture.lines), (
        "the SDK's HTTP logging was captured"
    )
    for where, text in haystacks.items():
        assert CANARY not in text, f"the canary leaked into {where}"
