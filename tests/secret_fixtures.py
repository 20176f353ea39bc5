"""Fixtures the credential-service tests share: the secret stores and the protected API,
each started once per test module on 127.0.0.1 (``pytest_plugins`` in ``tests/conftest.py``).
A module that needs another shape (an API with a long token lifetime) defines its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.secret_servers import StoreServers
from tests.servers.api import ProtectedApi
from tests.servers.gsm import FakeSecretManager


@pytest.fixture(scope="module")
def servers() -> Iterator[StoreServers]:
    """Moto (AWS), Vault KV v2, the Secret Manager gRPC server and a file store."""
    rig = StoreServers()
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def api() -> Iterator[ProtectedApi]:
    """An API that accepts only the credential currently issued to it."""
    server = ProtectedApi()
    yield server
    server.close()


@pytest.fixture
def gsm() -> Iterator[FakeSecretManager]:
    """A Secret Manager server of its own for one test (tests may stop it: an outage)."""
    server = FakeSecretManager().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_key() -> bytes:
    """The key webhooks are signed with; a module may give its own."""
    return b"shared-test-webhook-key-01234567"


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, api: ProtectedApi, servers: StoreServers, webhook_key: bytes
) -> dict[str, str]:
    """The environment this process and a CLI subprocess share: the secrets the policies name
    by ``env`` reference (configs never hold values) and the stores' credentials."""
    variables = {
        "BW_TEST_ADMIN_TOKEN": api.admin_token,
        "BW_TEST_WEBHOOK_KEY": webhook_key.decode(),
    }
    variables.update(servers.environment())
    for key, value in variables.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **variables, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
