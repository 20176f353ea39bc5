"""A file sink's ``window``: each row's fixed event-time window, for one directory of files per
window (what Beam's windowed file writes and Flink's time bucket assigners give).

The rows are not put in Beam windows: a sink only needs to know where a row's file goes, and a
Beam window would bring a watermark, late data and its silent drop with it. So a row arriving
long after its window still lands in that window's directory (on unbounded input in a later
pane of it). Rows without a usable event time go to the dead letters (rule ``event_time``, or
``missing_field`` when the batch lacks the field), counted as the sink's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa

from connectors.metrics import ROWS_DEAD, NodeCounters
from connectors.names import labelled_pardo
from connectors.panes import BUCKET_COLUMN
from connectors.records import dead_letters_for_rows
from transforms.windowing import EVENT_TIME, MISSING_FIELD, event_micros

DEAD_LETTERS = "dead_letters"


class _BucketFn(beam.DoFn):
    def __init__(self, field: str, size: int, offset: int, sink: str, run_id: str) -> None:
        self._field = field
        self._size = size
        self._offset = offset
        self._sink = sink
        self._run_id = run_id

    def setup(self) -> None:
        self._counters = NodeCounters(self._sink)

    def _letters(self, rows: pa.Table, error: str, rule: str) -> Any:
        self._counters.inc(ROWS_DEAD, rows.num_rows)
        letters = dead_letters_for_rows(
            rows,
            errors=[error] * rows.num_rows,
            rules=[rule] * rows.num_rows,
            step=self._sink,
            run_id=self._run_id,
        )
        return beam.pvalue.TaggedOutput(DEAD_LETTERS, letters)

    def process(self, table: pa.Table) -> Iterator[Any]:
        if not table.num_rows:
            return
        if self._field not in table.column_names:
            yield self._letters(
                table, f"field {self._field} missing from this batch", MISSING_FIELD
            )
            return
        micros, valid, problem = event_micros(table.column(self._field), self._field)
        if not valid.all():
            yield self._letters(table.filter(pa.array(~valid)), problem, EVENT_TIME)
            table, micros = table.filter(pa.array(valid)), micros[valid]
            if not table.num_rows:
                return
        # Beam's FixedWindows: start = t - (t - offset) mod size (a floor modulo, as numpy's)
        starts = micros - np.mod(micros - self._offset, self._size)
        yield table.append_column(BUCKET_COLUMN, pa.array(starts, pa.int64()))


class EventTimeBuckets(beam.PTransform):
    """Tables -> the same rows with their window's start (µs) in ``BUCKET_COLUMN`` (output
    ``rows``), and ``dead_letters`` for rows without a usable event time.

    Args:
        field: the event-time column (timestamp, date or epoch milliseconds).
        size: window length in µs.
        offset: window offset in µs (Beam's ``FixedWindows(size, offset)``).
        sink: the sink's name (counters, the dead letters' ``step``).
        run_id: stamped on dead letters.
    """

    def __init__(self, field: str, size: int, offset: int, *, sink: str, run_id: str) -> None:
        super().__init__()
        self._fn = _BucketFn(field, size, offset, sink, run_id)

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        outputs = tables | labelled_pardo("Windows", self._fn).with_output_types(
            pa.Table
        ).with_outputs(DEAD_LETTERS, main="rows")
        outputs[DEAD_LETTERS].element_type = pa.Table
        return outputs
