"""Planning a read: one :class:`PartitionRead` per partition, resolved when the run starts.

Planning runs inside the pipeline (a DoFn after an Impulse), not when the pipeline is built, so
a pipeline built once (a template, a ``--follow`` cycle, a Dataflow job) always starts from the
offsets as they are when it runs. It asks the broker for the partitions of the topics, their
watermarks (from a fetch, see :mod:`connectors.kafka.offsets`), the start offsets, and, for
bounded reads, where each partition stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer

from connectors.kafka.offsets import (
    allocate_records,
    list_partitions,
    partition_key,
    probe_watermarks,
    resolve_starts,
)

BOUNDED_MODES = ("end_offsets", None)
PROBE_CONSUMER = {"fetch.wait.max.ms": 10, "max.partition.fetch.bytes": 65536}
"""Overrides for the planning consumer: quick fetch answers, little data fetched."""
_RESET_EARLIEST = ("earliest", "smallest", "beginning")


@dataclass(frozen=True)
class PartitionRead:
    """What to read of one partition: the element of the reading splittable DoFn.

    ``stop`` is the first offset not to read (None: no end); ``log_end`` the partition's end
    when the read was planned; ``deadline`` the wall-clock time (epoch s) to stop at;
    ``commit_start``: commit ``start`` even if nothing is read, because it was placed at the log
    end and the next run would place it past what arrives in between
    (:func:`connectors.kafka.offsets.resolve_starts`).
    """

    topic: str
    partition: int
    start: int
    stop: int | None
    log_end: int
    deadline: float | None = None
    commit_start: bool = False

    @property
    def key(self) -> str:
        return partition_key(self.topic, self.partition)

    @property
    def waits_for_data(self) -> bool:
        """True when the read may need records that are not in the partition yet."""
        return self.stop is None or self.stop > self.log_end


@dataclass(frozen=True)
class ReadPlan:
    """The planning settings of a source (plain data, pickled with the transform)."""

    topics: tuple[str, ...]
    start: Any = "committed"
    bounded: str | None = "end_offsets"
    max_records: int | None = None
    max_duration_s: float | None = None
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("topics must name at least one topic")
        if self.bounded not in BOUNDED_MODES:
            raise ValueError(f"bounded must be one of {BOUNDED_MODES}, not {self.bounded!r}")
        if self.max_records is not None and self.max_records < 1:
            raise ValueError("max_records must be at least 1")
        if self.max_duration_s is not None and self.max_duration_s <= 0:
            raise ValueError("max_duration_s must be positive")

    @property
    def unbounded(self) -> bool:
        """True when nothing ends the read: it runs until the pipeline is drained or cancelled."""
        return self.bounded is None and self.max_records is None and self.max_duration_s is None


def plan_reads(
    consumer: Consumer, plan: ReadPlan, *, reset: str, now: float
) -> list[PartitionRead]:
    """One read per partition of ``plan.topics``; ``now`` (epoch s) starts ``max_duration_s``.

    ``consumer`` should be configured with :data:`PROBE_CONSUMER`; ``reset`` is the consumer's
    ``auto.offset.reset``, used for partitions without a committed offset.
    """
    partitions = list_partitions(consumer, plan.topics, plan.timeout_s)
    watermarks = probe_watermarks(consumer, partitions, plan.timeout_s)
    reset = "earliest" if str(reset).lower() in _RESET_EARLIEST else "latest"
    starts, at_end = resolve_starts(
        consumer, partitions, plan.start, watermarks, reset=reset, timeout_s=plan.timeout_s
    )
    highs = {key: high for key, (_, high) in watermarks.items()}
    stops: dict[str, int | None]
    if plan.max_records is not None:
        stops = dict(
            allocate_records(plan.max_records, starts, highs, wait_for_more=plan.bounded is None)
        )
    elif plan.bounded == "end_offsets":
        stops = dict(highs)
    else:
        stops = dict.fromkeys(starts)
    deadline = None if plan.max_duration_s is None else now + plan.max_duration_s
    return [
        PartitionRead(
            tp.topic, tp.partition, starts[key], stops[key], highs[key], deadline, key in at_end
        )
        for tp in partitions
        for key in [partition_key(tp.topic, tp.partition)]
    ]
