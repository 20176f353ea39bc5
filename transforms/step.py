"""The one mechanism behind every row-rejecting step: an Arrow batch in, valid rows and dead
letters out, counts that reconcile.

A step's logic is a small picklable *processor* with ``setup()`` and ``process(table)`` that
works on whole Arrow tables and knows nothing of Beam. :class:`ArrowStep` runs it in a DoFn,
emits the kept rows on the main output and the rejected rows on the ``dead_letters`` output,
and counts, per step, ``rows_in = rows_out + rows_dead_lettered + rows_filtered`` (plus one
counter per failed rule, and one per failed rule and source the failing rows came from). Counters are Beam metrics, so the run summary reads them from the
PipelineResult on every runner.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.metrics import (
    ROWS_DEAD,
    ROWS_FILTERED,
    ROWS_IN,
    ROWS_OUT,
    TALLY,
    NodeCounters,
    rule_counter,
)
from connectors.names import labelled_pardo
from connectors.records import SOURCE_COLUMN, dead_letters_for_rows, empty_dead_letters

DEAD_LETTERS = "dead_letters"
ROWS = "rows"


@dataclass
class StepResult:
    """What a processor made of one batch."""

    rows: pa.Table
    dead_letters: pa.Table = field(default_factory=empty_dead_letters)
    filtered: int = 0
    rule_failures: Mapping[str, int] = field(default_factory=dict)


def with_rejected_rows(
    rows: pa.Table,
    table: pa.Table,
    bad: list[int],
    reasons: list[str],
    *,
    rule: str,
    step_name: str,
    run_id: str,
) -> StepResult:
    """``rows`` out, and the input rows at ``bad`` (indices into ``table``) dead-lettered
    under one ``rule`` with a reason each: the result of a step that rejects rows one by one."""
    if not bad:
        return StepResult(rows=rows)
    dead = dead_letters_for_rows(
        table.take(pa.array(bad, pa.int64())),
        errors=reasons,
        rules=[rule] * len(bad),
        step=step_name,
        run_id=run_id,
    )
    return StepResult(rows=rows, dead_letters=dead, rule_failures={rule: len(bad)})


class BatchProcessor(Protocol):
    """Step logic on whole Arrow tables. Must be picklable; heavy state is built in ``setup``."""

    def setup(self) -> None: ...

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult: ...

    # Optional: ``finish_bundle()``, called when a bundle ends, e.g. to write what the
    # processor gathered over the bundle's batches.


def failures_by_source(table: pa.Table, result: StepResult) -> dict[tuple[str, str], int]:
    """Rule failures per (rule id, source the failing rows came from), so that each input
    dataset gets its own data-quality results rather than the step's run-wide counts.

    Rejected rows are attributed through their dead letters' ``source`` and ``rule`` (ids
    joined by ``,``), grouped in Arrow. Failures that reject nothing (warning rules, batch-level
    expectations) belong to the batch's source when it has one; a batch mixing sources cannot
    say which of its rows failed, so those stay in the step's run-wide count only. Only called
    for batches with failures, so clean batches pay nothing.
    """
    dead = result.dead_letters
    counts: dict[tuple[str, str], int] = {}
    if dead.num_rows:
        rules = pc.split_pattern(dead.column("rule"), ",")
        pairs = pa.table(
            {
                "rule": pc.list_flatten(rules),
                "source": dead.column("source").take(pc.list_parent_indices(rules)),
            }
        ).filter(pc.is_valid(pc.field("source")))
        grouped = pairs.group_by(["rule", "source"], use_threads=False).aggregate(
            [("rule", "count")]
        )
        for row in grouped.to_pylist():
            counts[(row["rule"], row["source"])] = row["rule_count"]
    rejected: dict[str, int] = {}
    for (rule, _), n in counts.items():
        rejected[rule] = rejected.get(rule, 0) + n
    unrejected = {r: n - rejected.get(r, 0) for r, n in result.rule_failures.items()}
    unrejected = {r: n for r, n in unrejected.items() if n > 0}
    if unrejected and SOURCE_COLUMN in table.column_names:
        sources = pc.unique(table.column(SOURCE_COLUMN).cast(pa.string())).drop_null()
        if len(sources) == 1:
            source = sources[0].as_py()
            for rule, n in unrejected.items():
                counts[(rule, source)] = counts.get((rule, source), 0) + n
    return counts


class _ArrowStepFn(beam.DoFn):
    def __init__(self, step: str, processor: BatchProcessor) -> None:
        self._step = step
        self._processor = processor
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)
        self._processor.setup()

    # No annotations here on purpose: Beam turns them into type hints, and a variadic side
    # input annotation breaks its type checking.
    def process(self, table, *side_inputs):  # noqa: ANN001, ANN201, ANN002
        counters = self._counters
        assert counters is not None
        result = self._processor.process(table, *side_inputs)
        counters.inc(ROWS_IN, table.num_rows)
        counters.inc(ROWS_OUT, result.rows.num_rows)
        counters.inc(ROWS_DEAD, result.dead_letters.num_rows)
        counters.inc(ROWS_FILTERED, result.filtered)
        for rule, n in result.rule_failures.items():
            counters.inc(rule_counter(rule), n)
        if result.rule_failures:
            for (rule, source), n in failures_by_source(table, result).items():
                counters.inc(rule_counter(rule, source), n)
        TALLY.add(self._step, table.num_rows)
        if result.rows.num_rows:
            yield result.rows
        if result.dead_letters.num_rows:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, result.dead_letters)

    def finish_bundle(self) -> None:
        finish = getattr(self._processor, "finish_bundle", None)
        if finish is not None:
            finish()


class ArrowStep(beam.PTransform):
    """Apply a :class:`BatchProcessor` to a PCollection of Arrow tables.

    Returns a tagged tuple with ``rows`` (kept rows) and ``dead_letters`` (rejected rows in the
    dead-letter schema). Both outputs must be consumed; the pipeline builder checks this.

    Args:
        processor: the step logic.
        step_name: names the counters and the ``step`` of dead-letter records.
        side_inputs: Beam side inputs passed to ``processor.process`` after the table.
    """

    def __init__(
        self, processor: BatchProcessor, *, step_name: str, side_inputs: Iterable[Any] = ()
    ) -> None:
        super().__init__(label=step_name)
        self._processor = processor
        self._step = step_name
        self._side_inputs = tuple(side_inputs)

    @property
    def step_name(self) -> str:
        return self._step

    @property
    def processor(self) -> BatchProcessor:
        """The step logic, so validation can run it on an empty batch without Beam."""
        return self._processor

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        outputs = tables | labelled_pardo(
            "Process", _ArrowStepFn(self._step, self._processor), *self._side_inputs
        ).with_output_types(pa.Table).with_outputs(DEAD_LETTERS, main=ROWS)
        outputs[DEAD_LETTERS].element_type = pa.Table  # tagged outputs get no type otherwise
        return outputs
