"""``WritePostgres``: Arrow rows upserted into a PostgreSQL table, refused rows dead-lettered.

Each batch is one :meth:`connectors.postgres_upsert.UpsertWriter.write` (COPY into a staging
table + ``INSERT ... ON CONFLICT``, one transaction), so a bundle the runner retries rewrites
the same rows to the same values: idempotent, never duplicated. Up to ``concurrency``
batches of a bundle are upserted at once (:class:`connectors.postgres_upsert.ConcurrentUpserts`;
a batch sharing a key with one in flight waits for it); the bundle ends only when every batch
has, and each batch's outputs keep its own windows. Rows created and updated are counted (``<sink>/created``, ``<sink>/updated``: the run summary's stats of the sink). Rows
PostgreSQL refuses go to the ``dead_letters`` output with its message, or fail the bundle with
``on_failure="fail"``; the main output gets one summary per batch:
``{"sink", "table", "rows_written", "created", "updated", "rows_dead_lettered"}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.utils.windowed_value import WindowedValue

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors import records
from connectors.errors import RunError
from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_WRITTEN, NodeCounters
from connectors.names import labelled_pardo
from connectors.postgres_upsert import ConcurrentUpserts, UpsertResult, UpsertWriter

DEAD_LETTERS = "dead_letters"
WRITTEN = "written"
FAILURE_MODES = ("dead_letter", "fail")
CREATED, UPDATED = "created", "updated"  # counters beside rows_written: the sync report's


class RowsRefusedError(RunError, RuntimeError):
    """PostgreSQL refused rows and the sink was told to fail rather than dead-letter."""


def write_outputs(
    tables: beam.PCollection, label: str, fn: beam.DoFn
) -> beam.pvalue.DoOutputsTuple:
    """``fn`` over ``tables`` as a sink's two outputs: ``written`` (its summaries) and
    ``dead_letters`` (Arrow tables), the shape every writing sink hands the pipeline."""
    outputs = tables | labelled_pardo(label, fn).with_outputs(DEAD_LETTERS, main=WRITTEN)
    outputs[DEAD_LETTERS].element_type = pa.Table
    return outputs


def refused_rows(
    table: pa.Table, failures: Mapping[int, str], *, rule: str, step: str, run_id: str
) -> Iterator[beam.pvalue.TaggedOutput]:
    """The rows of ``table`` a writer refused (``failures``: row index -> the target's
    answer), in row order, as one dead-letter table on the ``dead_letters`` output: nothing a
    sink was handed is lost, whichever target refused it."""
    failed = sorted(failures)
    if failed:
        yield beam.pvalue.TaggedOutput(
            DEAD_LETTERS,
            records.dead_letters_for_rows(
                table.take(pa.array(failed, pa.int64())),
                errors=[failures[row] for row in failed],
                rules=[rule] * len(failed),
                step=step,
                run_id=run_id,
            ),
        )


class WritePostgres(beam.PTransform):
    """Upsert Arrow rows into a table; outputs ``written`` (summaries) and ``dead_letters``.

    Args:
        writer: the table, its keys and where it is.
        sink_name: names the counters (``<sink>/rows_in``, ``rows_written``,
            ``rows_dead_lettered``) and the dead letters' step.
        on_failure: ``"dead_letter"`` or ``"fail"`` (fail the bundle, hence the run).
        run_id: stamped on dead letters.
        concurrency: batches of a bundle upserted at once, each on its own connection.
    """

    def __init__(
        self,
        writer: UpsertWriter,
        *,
        sink_name: str,
        on_failure: str = "dead_letter",
        run_id: str = "",
        concurrency: int = 2,
    ) -> None:
        super().__init__()
        if on_failure not in FAILURE_MODES:
            raise ValueError(f"on_failure must be one of {FAILURE_MODES}, not {on_failure!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        self._fn = _UpsertFn(writer, sink_name, on_failure, run_id, concurrency)

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        return write_outputs(tables, "Upsert", self._fn)


class _UpsertFn(beam.DoFn):
    def __init__(
        self, writer: UpsertWriter, sink: str, on_failure: str, run_id: str, concurrency: int
    ) -> None:
        self._writer = writer
        self._sink = sink
        self._on_failure = on_failure
        self._run_id = run_id
        self._concurrency = concurrency

    def setup(self) -> None:
        self._counters = NodeCounters(self._sink)
        self._upserts = ConcurrentUpserts(self._writer, self._concurrency)

    def start_bundle(self) -> None:
        self._ready: list[Any] = []

    def process(
        self, table: pa.Table, element: WindowedValue = beam.DoFn.WindowedValueParam
    ) -> None:
        if table.num_rows:
            self._counters.inc(ROWS_IN, table.num_rows)
            for tag, result in self._upserts.put(records.strip_positions(table), (element, table)):
                self._ready += self._outputs(*tag, result)

    def finish_bundle(self) -> Iterator[Any]:
        for tag, result in self._upserts.drain():
            self._ready += self._outputs(*tag, result)
        ready, self._ready = self._ready, []
        yield from ready

    def teardown(self) -> None:
        self._upserts.close()

    def _outputs(self, element: WindowedValue, table: pa.Table, result: UpsertResult) -> list[Any]:
        """One batch's counts, and its outputs in its own windows. They are emitted when the
        bundle finishes: Beam would re-window an output of process() by the input element
        at hand, which is another batch's."""
        failed = sorted(result.failures)
        if failed and self._on_failure == "fail":
            self._upserts.close()  # the other batches in flight end before the bundle fails
            raise RowsRefusedError(
                f"PostgreSQL sink {self._sink}: {len(failed)} rows refused by "
                f"{self._writer.table} (first: {result.failures[failed[0]]})"
            )
        self._counters.inc(ROWS_WRITTEN, result.written)
        self._counters.inc(CREATED, result.created)
        self._counters.inc(UPDATED, result.updated)
        self._counters.inc(ROWS_DEAD, len(failed))
        outputs: list[Any] = [
            beam.pvalue.TaggedOutput(dead.tag, element.with_value(dead.value))
            for dead in refused_rows(
                table, result.failures, rule="upsert", step=self._sink, run_id=self._run_id
            )
        ]
        outputs.append(
            element.with_value(
                {
                    "sink": self._sink,
                    "table": self._writer.table,
                    "rows_written": result.written,
                    "created": result.created,
                    "updated": result.updated,
                    "rows_dead_lettered": len(failed),
                }
            )
        )
        return outputs
