"""Every rotatable provider against a real server: the same contract, store by store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from connectors.secrets import Secret, SecretError
from connectors.secrets.model import (
    CURRENT,
    DISABLED,
    ENABLED,
    LATEST,
    PENDING,
    PREVIOUS,
    SecretNotFound,
    SecretUnavailable,
)
from connectors.secrets.refs import StoredSecret, secret_ref
from connectors.secrets.registry import create_provider, open_source, open_store
from tests.secret_servers import azure_config
from tests.servers.azure_keyvault import AzureKeyVaultServer
from tests.servers.gsm import FakeSecretManager
from tests.servers.moto import moto_endpoint
from tests.servers.vault import VaultServer


@pytest.fixture(scope="module")
def vault() -> Iterator[VaultServer]:
    server = VaultServer(token="vault-root-token")
    yield server
    server.close()


@pytest.fixture(scope="module")
def aws_url() -> Iterator[str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with moto_endpoint() as url:
            yield url


@pytest.fixture(scope="module")
def keyvault() -> Iterator[AzureKeyVaultServer]:
    server = AzureKeyVaultServer(token="azure-bearer-token")
    yield server
    server.close()


@pytest.fixture(params=["file", "gcp", "vault", "aws", "azure"])
def store_config(
    request: pytest.FixtureRequest, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    kind = request.param
    if kind == "file":
        return {"type": "file", "path": str(tmp_path / "store")}
    if kind == "gcp":
        return {
            "type": "gcp",
            "project": "p1",
            "emulator_host": request.getfixturevalue("gsm").address,
            "timeout": 2,
        }
    if kind == "vault":
        monkeypatch.setenv("BW_TEST_VAULT_TOKEN", "vault-root-token")
        server = request.getfixturevalue("vault")
        return {
            "type": "vault",
            "url": server.url,
            "token_env": "BW_TEST_VAULT_TOKEN",
            "path_prefix": f"{tmp_path.name}/",
        }
    if kind == "azure":
        monkeypatch.setenv("BW_TEST_AZURE_TOKEN", "azure-bearer-token")
        return azure_config(
            request.getfixturevalue("keyvault"), name_prefix=f"{tmp_path.name.replace('_', '-')}-"
        )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return {
        "type": "aws",
        "endpoint_url": request.getfixturevalue("aws_url"),
        "region": "us-east-1",
    }


def _name(request: pytest.FixtureRequest) -> str:
    return f"k-{abs(hash(request.node.nodeid)) % 10**8}"


def test_versions_stages_and_promotion(
    store_config: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    store = open_store(store_config)
    name = _name(request)
    store.ensure(name)
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=7)
    v1 = store.add_version(name, Secret(b"alpha-value-1"), expire_time=expires)
    assert store.access(name, PENDING).secret.reveal() == b"alpha-value-1"
    assert store.promote(name, v1, expect_current=None) is None
    v2 = store.add_version(name, Secret(b"bravo-value-2"))
    assert store.promote(name, v2, expect_current=v1) == v1

    current = store.access(name, CURRENT)
    assert (current.version, current.secret.reveal()) == (v2, b"bravo-value-2")
    assert store.access(name, PREVIOUS).secret.reveal() == b"alpha-value-1"
    assert store.access(name, v1).secret.reveal() == b"alpha-value-1"
    if store_config["type"] == "aws":
        with pytest.raises(SecretError, match="no version order"):
            store.access(name, LATEST)
    else:
        assert store.access(name, LATEST).version == v2
    with pytest.raises(SecretNotFound):
        store.access(name, PENDING)
    view = store.stages(name)
    assert (view.current, view.previous) == (v2, v1)

    info = store.describe(name)
    assert info.stages[CURRENT] == v2 and info.stages[PREVIOUS] == v1 and PENDING not in info.stages
    assert info.version(v1).expire_time == expires
    assert info.at(CURRENT).state == ENABLED and info.at(CURRENT).stages == frozenset({CURRENT})
    assert "bravo" not in repr(info) and "bravo" not in repr(current)
    store.close()


def test_rollback_primitives(store_config: dict[str, Any], request: pytest.FixtureRequest) -> None:
    store = open_store(store_config)
    name = _name(request)
    store.ensure(name)
    v1 = store.add_version(name, Secret(b"charlie-1"))
    store.promote(name, v1, expect_current=None)
    v2 = store.add_version(name, Secret(b"delta-2"))
    assert not store.clear_stage(name, PENDING, v1)  # points elsewhere: left alone
    assert store.access(name, PENDING).version == v2
    assert store.clear_stage(name, PENDING, v2)
    store.disable(name, v2)
    with pytest.raises(SecretNotFound):
        store.access(name, PENDING)
    assert store.describe(name).version(v2).state == DISABLED
    assert store.access(name, CURRENT).secret.reveal() == b"charlie-1"
    if store_config["type"] != "aws":  # AWS keeps deprecated versions readable by id
        with pytest.raises(SecretError):
            store.access(name, v2)
        store.enable(name, v2)
        assert store.access(name, v2).secret.reveal() == b"delta-2"
    if store_config["type"] not in ("aws", "azure"):
        store.destroy(name, v2)
        assert store.describe(name).version(v2).state == "destroyed"
    else:  # both delete whole secrets only
        with pytest.raises(SecretError, match="cannot destroy"):
            store.destroy(name, v2)
    store.close()


def test_unknown_secret_is_not_found(store_config: dict[str, Any]) -> None:
    store = open_store(store_config)
    with pytest.raises(SecretNotFound):
        store.access("no-such-secret", CURRENT)
    with pytest.raises(SecretNotFound):
        store.stages("no-such-secret")
    store.close()


def test_secret_manager_aliases_are_visible_to_any_client(gsm: FakeSecretManager) -> None:
    import grpc
    from google.cloud import secretmanager_v1
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (
        SecretManagerServiceGrpcTransport,
    )

    store = open_store({"type": "gcp", "project": "p2", "emulator_host": gsm.address})
    store.ensure("shared")
    store.promote("shared", store.add_version("shared", Secret(b"echo-value")), expect_current=None)
    channel = grpc.insecure_channel(gsm.address)
    client = secretmanager_v1.SecretManagerServiceClient(
        transport=SecretManagerServiceGrpcTransport(channel=channel)
    )
    response = client.access_secret_version(name="projects/p2/secrets/shared/versions/current")
    assert response.payload.data == b"echo-value"
    assert client.get_secret(name="projects/p2/secrets/shared").version_aliases["current"] == 1

    doomed = datetime(2030, 1, 1, tzinfo=timezone.utc)
    client.create_secret(
        parent="projects/p2",
        secret_id="doomed",
        secret={
            "replication": {"automatic": {}},
            "expire_time": doomed,
            "annotations": {"owner": "team-a"},
        },
    )
    info = store.describe("doomed")
    assert info.expire_time == doomed and info.annotations == {"owner": "team-a"}
    channel.close()
    store.close()


def test_secret_manager_outage_fails_fast_and_recovers(gsm: FakeSecretManager) -> None:
    store = create_provider(
        {"type": "gcp", "project": "p3", "emulator_host": gsm.address, "timeout": 2}
    )
    store.ensure("outage")
    store.promote("outage", store.add_version("outage", Secret(b"foxtrot")), expect_current=None)
    gsm.stop()
    try:
        started = time.monotonic()
        with pytest.raises(SecretUnavailable):
            store.access("outage")
        assert time.monotonic() - started < 2.5
    finally:
        gsm.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            assert store.access("outage").secret.reveal() == b"foxtrot"
            break
        except SecretUnavailable:
            assert time.monotonic() < deadline, "client did not reconnect after the outage"
            time.sleep(0.1)
    store.close()


def test_vault_rejects_a_wrong_token(vault: VaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BW_TEST_VAULT_TOKEN", "wrong-token")
    store = create_provider({"type": "vault", "url": vault.url, "token_env": "BW_TEST_VAULT_TOKEN"})
    with pytest.raises(SecretError, match="denied"):
        store.access("anything")


def test_env_provider_and_chain_order(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    file_config = {"type": "file", "path": str(tmp_path / "store")}
    store = open_store(file_config)
    store.promote(
        "api-key", store.add_version("api-key", Secret(b"from-the-store")), expect_current=None
    )
    chain_config = [{"type": "env", "prefix": "BWT_"}, file_config]
    chain = open_source(chain_config)
    assert chain.access("api-key").secret.reveal() == b"from-the-store"
    monkeypatch.setenv("BWT_API_KEY", "from-the-env")
    monkeypatch.setenv("BWT_API_KEY_PREVIOUS", "older-env")
    assert chain.access("api-key").secret.reveal() == b"from-the-env"
    assert chain.access("api-key", PREVIOUS).secret.reveal() == b"older-env"
    assert chain.stages("api-key").current.startswith("env-")
    with pytest.raises(SecretNotFound, match="any provider"):
        chain.access("missing")
    ref = secret_ref({"store": chain_config, "name": "api-key"})
    assert isinstance(ref, StoredSecret) and ref.resolve().reveal() == b"from-the-env"
    with pytest.raises(SecretError, match="read-only"):
        open_store({"type": "env"})


def test_unreachable_provider_stops_the_chain(tmp_path: Any, gsm: FakeSecretManager) -> None:
    file_config = {"type": "file", "path": str(tmp_path / "store")}
    fallback = open_store(file_config)
    fallback.promote(
        "db", fallback.add_version("db", Secret(b"stale-fallback")), expect_current=None
    )
    dead = {"type": "gcp", "project": "p", "emulator_host": "127.0.0.1:9", "timeout": 1}
    with pytest.raises(SecretUnavailable):
        open_source([dead, file_config]).access("db")


def test_configs_are_checked() -> None:
    with pytest.raises(SecretError, match="unknown secret provider type"):
        create_provider({"type": "nope"})
    with pytest.raises(SecretError, match="unknown option"):
        create_provider({"type": "file", "path": "x", "pathh": "y"})
    with pytest.raises(SecretError, match="invalid secret name"):
        open_store({"type": "file", "path": "x"}).access("../etc/passwd")
