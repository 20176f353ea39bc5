"""The ``dedupe`` step: at most one row per key in the whole input, the others dead-lettered.

The validate step's ``unique`` rule sees one batch; duplicates in different files, batches or
sources (the same quote from two providers) need the whole input. Only keys travel through
Beam's shuffle: each batch gives ``(key, position)`` pairs, a combine per key finds the keys
held more than once, and the rows that lose (every one but the earliest by source position:
file name, then line or offset) come back to the step as a side input, usually tiny. The rows
themselves never leave their Arrow batch.

Rows need source positions (``_bw_source``/``_bw_offset``), which is what makes "earliest"
deterministic and lets the loser's dead letter name the row it duplicates. Bounded inputs
only: a combine over an unbounded input in the global window never fires.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa

from connectors.errors import RunError
from connectors.records import OFFSET_COLUMN, SOURCE_COLUMN, dead_letters_for_rows
from transforms.step import ArrowStep, StepResult

RULE = "duplicate"
Position = tuple[str, int]


def keys_and_positions(table: pa.Table, keys: Sequence[str], step: str) -> list[tuple]:
    """``(key as JSON text, (source, offset))`` for every row of ``table``."""
    missing = [k for k in (*keys, SOURCE_COLUMN, OFFSET_COLUMN) if k not in table.column_names]
    if missing:
        raise RunError(
            f"rows without field(s) {', '.join(missing)}",
            where=step,
            hint="dedupe on fields the rows have, before steps that drop source positions "
            "(window steps)",
        )
    values = [table.column(k).to_pylist() for k in keys]
    texts = [json.dumps(row, default=str) for row in zip(*values, strict=True)]  # a stable key
    sources = table.column(SOURCE_COLUMN).cast(pa.string()).to_pylist()
    offsets = table.column(OFFSET_COLUMN).to_pylist()
    if None in sources or None in offsets:
        raise RunError(
            "rows without a source position cannot be deduplicated deterministically",
            where=step,
            hint="place dedupe before steps that make new rows (window steps)",
        )
    return list(zip(texts, zip(sources, offsets, strict=True), strict=True))


def losers(element: tuple[str, Iterable[Position]]) -> Iterable[tuple[Position, Position]]:
    """``(loser, winner)`` for a key held more than once: the earliest position wins."""
    _, positions = element
    ordered = sorted(positions)
    if len(ordered) > 1:
        for position in ordered[1:]:
            yield position, ordered[0]


class Deduplicator:
    """Batch processor for :class:`Dedupe`: ``process(table, losers)`` with ``losers`` the
    side input ``{(source, offset): (source, offset) of the row kept}``."""

    def __init__(self, *, keys: Sequence[str], step_name: str, run_id: str = "") -> None:
        self.keys = list(keys)
        self.step_name = step_name
        self.run_id = run_id

    def setup(self) -> None:
        pass

    def process(self, table: pa.Table, dropped: dict[Position, Position]) -> StepResult:
        if not dropped or not table.num_rows:
            return StepResult(table)
        sources = table.column(SOURCE_COLUMN).cast(pa.string()).to_pylist()
        offsets = table.column(OFFSET_COLUMN).to_pylist()
        winners = [dropped.get(p) for p in zip(sources, offsets, strict=True)]
        lose = np.array([w is not None for w in winners])
        if not lose.any():
            return StepResult(table)
        where = np.flatnonzero(lose)
        errors = [
            f"({', '.join(self.keys)}) already in {winners[i][0]} at {winners[i][1]}" for i in where
        ]
        letters = dead_letters_for_rows(
            table.take(pa.array(where)),
            errors=errors,
            rules=[RULE] * len(where),
            step=self.step_name,
            run_id=self.run_id,
        )
        kept = table.filter(pa.array(~lose))
        return StepResult(kept, letters, rule_failures={RULE: len(where)})


class Dedupe(beam.PTransform):
    """Keep one row per value of ``keys`` across the whole (bounded) input; dead-letter the
    rest (rule ``duplicate``). Returns ``rows`` and ``dead_letters`` like every step.

    Args:
        keys: the fields that make a row's identity, e.g. ``["symbol", "ts"]``.
        step_name: names counters, transforms and dead letters.
        run_id: stamped on dead letters.
    """

    def __init__(self, keys: Sequence[str], *, step_name: str = "dedupe", run_id: str = "") -> None:
        super().__init__(label=step_name)
        if not keys:
            raise ValueError("dedupe needs at least one key field")
        self._keys = list(keys)
        self._step = step_name
        self._run_id = run_id

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        keys, step = self._keys, self._step
        dropped = (
            tables
            | "Keys" >> beam.FlatMap(keys_and_positions, keys, step)
            | "Positions" >> beam.GroupByKey()
            | "Losers" >> beam.FlatMap(losers)
        )
        processor = Deduplicator(keys=keys, step_name=step, run_id=self._run_id)
        return tables | "Split" >> ArrowStep(
            processor, step_name=step, side_inputs=[beam.pvalue.AsDict(dropped)]
        )
