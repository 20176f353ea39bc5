"""The ``batch`` step: regroup a keyed stream into Arrow tables of one key each.

Downstream calls that work per key (one HTTP request per customer, one file per tenant) want
all of a key's rows together, but a stream delivers them spread over many batches. Like Beam's
``GroupIntoBatches``, this buffers rows per key (and window) in state and emits a batch when it
is full, when its first row has waited ``max_buffering_duration`` (processing time), or when
the window ends.

Beam's transform is not used as is: it needs one element per row and stores each one whole,
which measured about 30k rows/s here (100 keys, FnApiRunner), and rows would lose their Arrow
types on the way. Instead each incoming batch is split by key with Arrow's group-by, each key's
slice travels as one Arrow table, and state buffers those slices (Arrow IPC bytes) with their
row count, so the work is per key and batch, not per row (about 800k rows/s for the same
input), and every column keeps its type (timestamps, decimals, the dictionary-encoded source
column). Slices whose schema differs from the buffered ones (a producer added a field) flush
the buffer first: one table never mixes schemas.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.coders import FastPrimitivesCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.utils.timestamp import Timestamp

from connectors.arrow_coder import ArrowTableCoder
from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_OUT, TALLY, NodeCounters, rule_counter
from connectors.names import labelled_pardo
from connectors.records import dead_letters_for_rows
from transforms.call_strategies import THROTTLED_MS
from transforms.step import DEAD_LETTERS, ROWS
from transforms.windowing import MISSING_FIELD, beam_key

BATCHES_OUT = "batches_out"
"""Counter of Arrow tables a batch step emitted."""

_KEY_CODER = FastPrimitivesCoder().as_deterministic_coder("BatchByKey key")
_TABLES = ArrowTableCoder()
_ROW = "__bw_row"


# The DoFn methods below carry no annotations on purpose: Beam reads them as type hints.


class _SplitByKeyFn(beam.DoFn):
    """Arrow batch -> ``(key, slice)`` per key in it; dead letters if a key field is missing.

    The key is the key values, encoded deterministically; the slice holds that key's rows in
    their order, with the batch's schema.
    """

    def __init__(self, key_fields: Sequence[str], step: str, run_id: str) -> None:
        self._key_fields = list(key_fields)
        self._step = step
        self._run_id = run_id
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)

    def process(self, table):
        counters = self._counters
        assert counters is not None
        n = table.num_rows
        counters.inc(ROWS_IN, n)
        TALLY.add(self._step, n)
        missing = [f for f in self._key_fields if f not in table.column_names]
        if missing:
            error = f"key field(s) {', '.join(missing)} missing from this batch"
            counters.inc(ROWS_DEAD, n)
            counters.inc(rule_counter(MISSING_FIELD), n)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS,
                dead_letters_for_rows(
                    table,
                    errors=[error] * n,
                    rules=[MISSING_FIELD] * n,
                    step=self._step,
                    run_id=self._run_id,
                ),
            )
            return
        if not n:
            return
        if not self._key_fields:
            yield _KEY_CODER.encode(()), table
            return
        groups = (
            table.select(self._key_fields)
            .append_column(_ROW, pa.array(np.arange(n)))
            .group_by(self._key_fields, use_threads=False)
            .aggregate([(_ROW, "list")])
        )
        keys = zip(*(groups.column(f).to_pylist() for f in self._key_fields), strict=True)
        for key, rows in zip(keys, groups.column(f"{_ROW}_list"), strict=True):
            yield _KEY_CODER.encode(beam_key(key)), table.take(rows.values)


class _BatchFn(beam.DoFn):
    """Buffer each key's slices; emit tables of ``batch_size`` rows when full, waited, or done.

    State per key and window is one cell, ``(schema, rows buffered, slices as Arrow IPC
    bytes)``: the SDK harness's state cache measures every value it stores by walking all
    loaded modules (about 0.6 ms per write here), so one write per element, not three, matters
    with many keys.
    """

    BUFFER = ReadModifyWriteStateSpec("buffer", FastPrimitivesCoder())
    WINDOW_END = TimerSpec("window_end", TimeDomain.WATERMARK)
    BUFFERING = TimerSpec("buffering", TimeDomain.REAL_TIME)

    def __init__(
        self,
        batch_size: int,
        max_buffering: float | None,
        clock: Callable[[], float],
        step: str,
        pace: tuple[float | None, int | None, int] = (None, None, 1),
    ) -> None:
        self._batch_size = batch_size
        self._max_buffering = max_buffering
        self._clock = clock
        self._step = step
        self._pace = pace
        self._counters: NodeCounters | None = None
        self._limiter: Any = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)
        rate, burst, workers = self._pace
        if rate is not None:
            from transforms.call_strategies import StrategyConfig, make_limiter

            kind = "burst" if burst else "streaming"
            config = StrategyConfig(kind=kind, rate_limit=rate, burst=burst)
            self._limiter = make_limiter(config, workers=workers, name=self._step)

    def process(
        self,
        element,
        window=beam.DoFn.WindowParam,
        buffer=beam.DoFn.StateParam(BUFFER),  # noqa: B008
        window_end=beam.DoFn.TimerParam(WINDOW_END),  # noqa: B008
        buffering=beam.DoFn.TimerParam(BUFFERING),  # noqa: B008
    ):
        _, table = element
        schema = table.schema.serialize().to_pybytes()
        held = buffer.read()
        if held is not None and held[0] != schema:  # never mix schemas in one table
            yield from self._emit(self._concat(held[2]))
            held = None
        if held is None:
            window_end.set(window.max_timestamp())
            self._start_wait(buffering)
            held = (schema, 0, [])
        _, buffered, slices = held
        encoded = _TABLES.encode(table)
        if buffered + table.num_rows < self._batch_size:
            buffer.write((schema, buffered + table.num_rows, [*slices, encoded]))
            return
        pending = self._concat([*slices, encoded])
        full = pending.num_rows - pending.num_rows % self._batch_size
        yield from self._emit(pending.slice(0, full))
        if full < pending.num_rows:  # the newest rows start the next batch
            rest = pending.slice(full)
            buffer.write((schema, rest.num_rows, [_TABLES.encode(rest)]))
            self._start_wait(buffering)
        else:
            buffer.clear()
            buffering.clear()

    @on_timer(WINDOW_END)
    def on_window_end(
        self,
        buffer=beam.DoFn.StateParam(BUFFER),  # noqa: B008
        buffering=beam.DoFn.TimerParam(BUFFERING),  # noqa: B008
    ):
        yield from self._flush(buffer, buffering)

    @on_timer(BUFFERING)
    def on_buffering(
        self,
        buffer=beam.DoFn.StateParam(BUFFER),  # noqa: B008
        buffering=beam.DoFn.TimerParam(BUFFERING),  # noqa: B008
    ):
        yield from self._flush(buffer, buffering)

    def _start_wait(self, buffering: Any) -> None:
        if self._max_buffering is not None:
            buffering.set(Timestamp.of(self._clock() + self._max_buffering))

    def _flush(self, buffer: Any, buffering: Any) -> Iterator[pa.Table]:
        held = buffer.read()
        buffer.clear()
        buffering.clear()
        if held is not None:
            yield from self._emit(self._concat(held[2]))

    @staticmethod
    def _concat(slices: Sequence[bytes]) -> pa.Table:
        return pa.concat_tables([_TABLES.decode(data) for data in slices])

    def _emit(self, rows: pa.Table) -> Iterator[pa.Table]:
        """``rows`` as tables of at most ``batch_size`` rows."""
        counters = self._counters
        assert counters is not None
        for start in range(0, rows.num_rows, self._batch_size):
            table = rows.slice(start, self._batch_size).combine_chunks()
            if self._limiter is not None:  # batches/s for the job, this worker's share
                counters.inc(THROTTLED_MS, int(self._limiter.acquire() * 1000))
            counters.inc(ROWS_OUT, table.num_rows)
            counters.inc(BATCHES_OUT, 1)
            yield table


class BatchOutputs(NamedTuple):
    """What :class:`BatchByKey` returns: per-key Arrow tables and dead letters (consume both)."""

    rows: beam.PCollection
    dead_letters: beam.PCollection


class BatchByKey(beam.PTransform):
    """Regroup Arrow batches into tables that each hold rows of one key (``GroupIntoBatches``-style).

    A table is emitted when ``batch_size`` rows of a key are buffered, when the first buffered
    row has waited ``max_buffering_duration`` seconds of processing time, or when the window
    ends (for the global window: when the input ends). Rows keep their order within a key and
    their position columns, so later steps can still dead-letter them precisely.

    Args:
        key_fields: fields whose values form the key (none: batch all rows together).
        batch_size: rows per emitted table, at most.
        max_buffering_duration: seconds a partial batch may wait; ``None``: no limit.
        step_name: names counters and the ``step`` of dead letters.
        run_id: written into dead letters.
        clock: processing-time clock for the buffering deadline (seconds, like
            ``time.time``). Leave it for real runs; a TestStream run needs a clock that starts
            at 0 like the runner's test clock (as for Beam's ``GroupIntoBatches``).
        rate_limit: emitted batches/s for the whole job, at most (each of ``workers`` worker
            processes takes its share; see ``transforms.call_strategies.RateLimiter``).
            Emitting waits for the limiter, which holds the bundle back: the throttle.
        burst: with ``rate_limit``: that many batches may go at once (a token bucket's
            capacity), then the steady rate.
        workers: worker processes of the job (``call_strategies.workers_from_options``).
    """

    def __init__(
        self,
        *,
        key_fields: Sequence[str],
        batch_size: int,
        max_buffering_duration: float | None = None,
        step_name: str = "batch",
        run_id: str = "",
        clock: Callable[[], float] = time.time,
        rate_limit: float | None = None,
        burst: int | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(label=step_name)
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_buffering_duration is not None and max_buffering_duration <= 0:
            raise ValueError("max_buffering_duration must be positive (seconds) or None")
        self._key_fields = list(key_fields)
        self._batch_size = batch_size
        self._max_buffering = max_buffering_duration
        self._step = step_name
        self._run_id = run_id
        self._clock = clock
        if burst is not None and rate_limit is None:
            raise ValueError("burst needs rate_limit (the steady rate)")
        self._pace = (rate_limit, burst, workers)

    def expand(self, tables: beam.PCollection) -> BatchOutputs:
        split = tables | labelled_pardo(
            "SplitByKey", _SplitByKeyFn(self._key_fields, self._step, self._run_id)
        ).with_outputs(DEAD_LETTERS, main=ROWS)
        dead_letters = split[DEAD_LETTERS]
        dead_letters.element_type = pa.Table
        slices: Any = split[ROWS]
        slices.element_type = beam.typehints.Tuple[bytes, pa.Table]
        batches = slices | "Batch" >> beam.ParDo(
            _BatchFn(self._batch_size, self._max_buffering, self._clock, self._step, self._pace)
        ).with_output_types(pa.Table)
        return BatchOutputs(batches, dead_letters)
