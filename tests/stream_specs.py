"""The streaming spec several tests build (translation, transform names, Flex metadata): Kafka
(unbounded unless told) -> validate -> window (fixed 60 s) -> a file sink, the validated rows
to a Kafka topic, the dead letters to a Kafka dead-letter topic. The broker is never
contacted: these tests build or translate, they do not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.loading import spec_from_data
from pipelines.spec import PipelineSpec

BROKER = "broker.invalid:9092"


def orders_stream(
    out: Path, *, bounded: str | None = None, extra_sinks: list[dict[str, Any]] | None = None
) -> PipelineSpec:
    return spec_from_data(
        {
            "name": "orders_stream",
            "sources": [
                {
                    "name": "orders",
                    "type": "kafka",
                    "bootstrap_servers": BROKER,
                    "topics": "orders",
                    "group_id": "beamwright",
                    "bounded": bounded,
                }
            ],
            "steps": [
                {
                    "name": "typed",
                    "type": "validate",
                    "fields": {
                        "order_id": {"type": "string", "required": True},
                        "country": {"type": "string"},
                        "amount": {"type": "float64"},
                    },
                },
                {
                    "name": "per_minute",
                    "type": "window",
                    "window": {"type": "fixed", "size": 60},
                    "group_by": ["country"],
                    "metrics": {"orders": "count", "revenue": "sum(amount)"},
                },
            ],
            "sinks": [
                {
                    "name": "warehouse",
                    "type": "file",
                    "path": str(out / "warehouse"),
                    "input": "per_minute",
                },
                {
                    "name": "clean_orders",
                    "type": "kafka",
                    "bootstrap_servers": BROKER,
                    "topic": "orders_clean",
                    "input": "typed",
                },
                *(extra_sinks or []),
            ],
            "dead_letter": {"type": "kafka", "bootstrap_servers": BROKER, "topic": "orders_dead_letters"},
            "lineage": {"enabled": False},
        }
    )
