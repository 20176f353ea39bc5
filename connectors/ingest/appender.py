"""Append records to a Kafka topic and know they are there before answering the sender.

One confluent-kafka producer (idempotent, ``acks=all``); :meth:`KafkaAppender.append` waits
for the delivery report, so an HTTP 2xx from the ingest server means the record is in Kafka
and a failure means the sender should retry. Librdkafka's own batching still applies across the
server's concurrent requests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connectors.errors import RunError


class AppendFailed(RunError):
    """Kafka did not confirm the record in time (the sender is told to retry)."""


class KafkaAppender:
    """Args:
    bootstrap_servers, topic: where records go.
    config: more librdkafka properties (secrets already resolved).
    timeout: seconds to wait for a delivery report.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        *,
        config: Mapping[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.timeout = timeout
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                **dict(config or {}),
            }
        )
        self._poller = threading.Thread(target=self._poll, daemon=True, name="ingest-kafka")
        self._stop = threading.Event()
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)

    def append(
        self, value: bytes, *, key: str | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        """Send one record; returns when Kafka has it, else raises :class:`AppendFailed`."""
        done = threading.Event()
        outcome: list[Any] = []

        def report(err: Any, msg: Any) -> None:
            outcome.append(err)
            done.set()

        self._producer.produce(
            self.topic,
            value,
            key=key.encode() if key is not None else None,
            headers=[(k, v.encode()) for k, v in (headers or {}).items()],
            on_delivery=report,
        )
        if not done.wait(self.timeout):
            raise AppendFailed(f"no delivery report from Kafka within {self.timeout:g}s")
        if outcome[0] is not None:
            raise AppendFailed(f"Kafka refused the record: {outcome[0]}")

    def close(self) -> None:
        """Deliver what is queued, then drop the producer (librdkafka keeps reconnecting to a
        broker for as long as a producer object lives)."""
        self._stop.set()
        self._poller.join(1.0)
        self._producer.flush(self.timeout)
        del self._producer
