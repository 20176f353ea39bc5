"""Aggregates per key and window for the ``window`` step: computed inside each Arrow batch
first, merged in Beam per key and window, and the Arrow tables they leave as.

Beam windows, groups and triggers on elements, one at a time. When every row was an element,
that per-element cost held Parquet -> validate -> window to 0.11x the rows/s of Parquet ->
validate alone (21k against 184k rows/s; ``beamwright bench --cases validate_only,window``,
1M orders, 2-CPU VM). So the step lifts the combiner into the batch (as a runner lifts a
CombineFn in front of its shuffle): :class:`BatchPartials` groups a batch's rows by key
and window with Arrow's ``group_by`` and returns one *partial* per key and window, and only
those become elements. A partial holds the key values and one partial result per metric, with
the meaning :mod:`transforms.aggregate` gives the metrics: ``count`` counts rows, the others
ignore nulls, ``mean`` is carried as sum and count, ``count_distinct`` as the set of values
(exact, however the rows were split). :class:`MergePartials` merges the partials of one key and
window in Beam. Measured the same way: the window case at 0.68-0.73x the validate-only rows/s
(0.8x per CPU-second); grouping a 125k-row batch into its 176 partials takes ~7 ms. Float
sums are added per batch and then across batches, so their last bits can differ from a
row-by-row sum (in the benchmark, 52 of 1,344 sums, each by less than 1e-12 relative).

Which window a partial belongs to is decided here, not by Beam (see
:class:`transforms.windowing.PresetWindows`): a row of a sliding window belongs to several
windows, so it counts in one partial per window; for sessions, the rows of one key in a batch
are first joined into proto-sessions (event times closer than the gap), which Beam then merges
across batches with Sessions' own merge, giving the sessions that per-row windows would.

Each fired pane becomes Arrow rows with its window and pane timing (:class:`FormatPanes`);
:class:`ConcatPanes` joins the rows of one bundle, window and pane into one table, so the steps
after a window do not pay per-row costs either.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import PaneInfoTiming, WindowedValue

from connectors.errors import RunError
from connectors.metrics import NodeCounters
from transforms.aggregate import Metric, aggregation, groupable

WINDOW_START, WINDOW_END, PANE_TIMING, PANE_INDEX = (
    "window_start",
    "window_end",
    "pane_timing",
    "pane_index",
)
"""Columns every aggregate row starts with, before its key fields and metrics."""

_FRONT = (WINDOW_START, WINDOW_END, PANE_TIMING, PANE_INDEX)

AGGREGATES_OUT = "aggregates_out"
"""Counter of aggregate rows a window step emitted (one per key, window and pane)."""

_TIME = pa.timestamp("us", tz="UTC")
_TIMINGS = {
    PaneInfoTiming.EARLY: "EARLY",
    PaneInfoTiming.ON_TIME: "ON_TIME",
    PaneInfoTiming.LATE: "LATE",
    PaneInfoTiming.UNKNOWN: "UNKNOWN",
}

Partial = list
"""``[key values, one partial result per metric]``; also the accumulator of
:class:`MergePartials` (key values ``None`` before the first partial)."""


def _hashable(value: Any) -> Hashable:
    """Distinct-count identity of a value: nested values (lists, structs) by their text."""
    return value if isinstance(value, Hashable) else repr(value)


def _fresh(kind: str) -> Any:
    if kind == "count":
        return 0
    if kind == "mean":
        return [None, 0]
    if kind == "count_distinct":
        return set()
    if kind in _KEEP_VALUES:
        return []
    return None


_KEEP_VALUES = ("stddev", "percentile")
"""Metrics whose partial is the group's non-null values (exact, at the cost of holding them:
meant for windows of hundreds or thousands of values, such as daily returns)."""


def _plus(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else a + b


def _merge(kind: str, a: Any, b: Any) -> Any:
    if kind == "count":
        return a + b
    if kind == "sum":
        return _plus(a, b)
    if kind == "min":
        return a if b is None or (a is not None and a <= b) else b
    if kind == "max":
        return a if b is None or (a is not None and a >= b) else b
    if kind == "mean":
        return [_plus(a[0], b[0]), a[1] + b[1]]
    if kind == "first":  # [event time, value]: the earlier wins
        return a if b is None or (a is not None and a[0] <= b[0]) else b
    if kind == "last":
        return a if b is None or (a is not None and a[0] > b[0]) else b
    if kind in _KEEP_VALUES:
        return a + b
    return a | b


_FLOAT_RESULTS = ("mean", "stddev", "percentile")
"""Metrics whose result is a float64 column even when every value is null."""


def _final(metric: Metric, partial: Any) -> Any:
    """The result of one metric from its merged partial, as a Python value."""
    kind = metric.kind
    if kind == "count":
        return partial
    if kind == "mean":
        total, n = partial
        return None if total is None else total / n
    if kind == "count_distinct":
        return len(partial)
    if kind in ("first", "last"):
        return None if partial is None else partial[1]
    if kind == "stddev":  # the sample standard deviation, as SQL's STDDEV_SAMP
        return float(np.std(partial, ddof=1)) if len(partial) > 1 else None
    if kind == "percentile":  # linear interpolation between ranks, as numpy's default
        return float(np.percentile(partial, metric.percent)) if partial else None
    return partial


class MetricRow(NamedTuple):
    """One key's metrics in one window and pane, as Python values; :func:`with_panes` builds
    the Arrow table of a bundle's rows at once (~0.2 µs a row, against ~30-60 µs for a
    one-row table each: with tens of thousands of keys per window that was the step's largest
    cost). ``floats`` are the columns typed float64 even when all null."""

    values: dict[str, Any]
    floats: tuple[str, ...]


def rows_table(rows: Sequence[MetricRow]) -> pa.Table:
    """The Arrow table of ``rows`` (types inferred as ``pa.array`` infers them, float metrics
    float64)."""
    table = pa.Table.from_pylist([row.values for row in rows])
    for name in rows[0].floats if rows else ():
        i = table.column_names.index(name)
        table = table.set_column(i, name, table.column(i).cast(pa.float64()))
    return table


# --------------------------------------------------------------------------- what is computed


class Aggregation(Protocol):
    """What a window-shaped step computes per key and window: the window step's metrics
    (:class:`MetricAggregation`) or the top step's rows (:class:`transforms.top.TopRows`).

    The window machinery (event time, lateness gate, window assignment, triggers, panes,
    counting) is the same for both; only these parts differ.
    """

    key_fields: list[str]
    fields: list[str]
    """Fields besides the keys that every row must have (missing: dead letters)."""
    in_arrow: bool
    """Batch, one pane per window: whether the step ranks the rows of every key and window in
    Arrow after one shuffle (its partials then have ``candidates`` and the aggregation
    ``ranked_windows``, as the top step's do) rather than combining partials in Beam."""

    def prepare(self, rows: pa.Table) -> tuple[pa.Table, np.ndarray | None, str, str]:
        """``rows`` ready for :meth:`batch_partials` (columns it computes may be added, named
        ``__bw_*``), the rows it cannot use (a mask, or ``None``), and the dead-letter message
        and rule for them."""
        ...

    def batch_partials(self, *, session_gap: int | None, per_row: bool, step: str) -> Any:
        """The in-batch half: an object whose ``partials(rows, micros, windows)`` returns a
        :class:`BatchPartial` per key and window (``partial`` = ``[key values, ...]``)."""
        ...

    def combine_fn(self) -> beam.CombineFn:
        """The in-Beam half: merges the partials of one key and window into an Arrow table
        (or a :class:`MetricRow`, which the panes join into one table per bundle)."""
        ...


class MetricAggregation:
    """The window step's metrics as an :class:`Aggregation` (``count``, ``sum(field)``...)."""

    in_arrow = False

    def __init__(self, key_fields: Sequence[str], metrics: Mapping[str, str]) -> None:
        self.key_fields = list(key_fields)
        self.metrics = dict(metrics)
        parsed = [Metric.parse(output, text) for output, text in self.metrics.items()]
        self.fields = [m.field for m in parsed if m.field]

    def prepare(self, rows: pa.Table) -> tuple[pa.Table, np.ndarray | None, str, str]:
        return rows, None, "", ""

    def batch_partials(self, *, session_gap: int | None, per_row: bool, step: str) -> BatchPartials:
        return BatchPartials(
            self.key_fields, self.metrics, session_gap=session_gap, per_row=per_row, step=step
        )

    def combine_fn(self) -> MergePartials:
        return MergePartialsToRows(self.key_fields, self.metrics)


# --------------------------------------------------------------------------- in the batch


@dataclass(frozen=True)
class BatchPartial:
    """One key and window of one batch: its window (µs; ``None`` for the global window), the
    earliest event time of its rows (µs), and the partial."""

    start: int | None
    end: int | None
    earliest: int
    partial: Partial


def _aggregations(metric: Metric, field: str | None) -> list[tuple[Any, str]]:
    """(column, Arrow function) pairs a metric's partial is built from (``field``: its column
    here)."""
    if metric.kind == "count":
        return [([], "count_all")]
    if metric.kind == "mean":
        return [(field, "sum"), (field, "count")]
    if metric.kind == "count_distinct":
        return [(field, "distinct")]
    if metric.kind == "first":  # rows are in event-time order when grouped (see _group)
        return [("__t", "min"), (field, "first")]
    if metric.kind == "last":
        return [("__t", "max"), (field, "last")]
    if metric.kind in _KEEP_VALUES:
        return [(field, "list")]
    return [(field, metric.kind)]


def _result_name(column: Any, function: str) -> str:
    return f"{column}_{function}" if column else function


def proto_sessions(table: pa.Table, keys: Sequence[str], time: str, gap: int) -> np.ndarray:
    """Proto-session of each row: its key's rows in event-time order (column ``time``, µs),
    cut where the next row is ``gap`` or more later (Beam merges ``[t, t + gap)`` windows
    that overlap, so these are the sessions of the batch's rows alone)."""
    n, micros = table.num_rows, table.column(time).to_numpy()
    key = np.zeros(n, np.int64)
    if keys:
        indexed = table.select(keys).append_column("__bw_i", pa.array(np.arange(n)))
        groups = indexed.group_by(list(keys), use_threads=False).aggregate([("__bw_i", "list")])
        members = groups.column("__bw_i_list").combine_chunks()
        key[pc.list_flatten(members).to_numpy()] = pc.list_parent_indices(members).to_numpy()
    order = np.lexsort((micros, key))
    t, k = micros[order], key[order]
    cut = np.empty(n, bool)
    cut[0] = True
    cut[1:] = (k[1:] != k[:-1]) | (t[1:] - t[:-1] >= gap)
    session = np.empty(n, np.int64)
    session[order] = np.cumsum(cut)
    return session


def rows_in_windows(
    table: pa.Table,
    windows: tuple[np.ndarray, np.ndarray, np.ndarray],
    keys: Sequence[str],
    time: str,
    session_gap: int | None,
) -> tuple[pa.Table, np.ndarray]:
    """``table`` with one row per (row, window) of ``windows`` (as :meth:`BatchPartials.partials`
    takes it) and each such row's window id: its window's start, or its proto-session (see
    :func:`proto_sessions`) when windows are sessions of gap ``session_gap``. The window and
    top steps both group by this id, so a session is cut the same way for both."""
    row, start, _ = windows
    if len(row) != table.num_rows:
        table = table.take(pa.array(row))
    if session_gap is None:
        return table, start
    return table, proto_sessions(table, keys, time, session_gap)


class BatchPartials:
    """Pre-aggregates the rows of one batch into a partial per key and window.

    Args:
        key_fields: grouping fields (their values are the partial's key).
        metrics: output column -> ``count`` or ``sum|min|max|mean|count_distinct(field)``, or
            ``first|last(field)`` (the value at the earliest/latest event time; nulls skipped),
            ``stddev(field)`` (sample) or ``pNN(field)`` (NN-th percentile, 1-99, linear).
        session_gap: sessions: join each key's rows whose event times are closer than this
            (µs) into one proto-session.
        per_row: one partial per row and window instead (for triggers that count elements).
        step: names the step in errors.
    """

    def __init__(
        self,
        key_fields: Sequence[str],
        metrics: Mapping[str, str],
        *,
        session_gap: int | None = None,
        per_row: bool = False,
        step: str = "window",
    ) -> None:
        self._keys = [f"k{i}" for i in range(len(key_fields))]
        self._key_fields = list(key_fields)
        parsed = [Metric.parse(output, text) for output, text in metrics.items()]
        fields = list(dict.fromkeys(m.field for m in parsed if m.field))
        self._fields = {field: f"f{i}" for i, field in enumerate(fields)}
        self._kinds = [m.kind for m in parsed]
        self._metric_aggs = [_aggregations(m, self._fields.get(m.field or "")) for m in parsed]
        self._ordered = any(kind in ("first", "last") for kind in self._kinds)
        self._session_gap = session_gap
        self._per_row = per_row
        self._step = step

    def partials(
        self,
        rows: pa.Table,
        micros: np.ndarray,
        windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> list[BatchPartial]:
        """Partials of ``rows`` (event times ``micros``), in the order their first row comes.

        ``windows`` is ``(row, start, end)`` for every window a row belongs to, row-major (see
        :meth:`transforms.windowing.Closing.windows`), or ``None`` for the global window.
        """
        if not rows.num_rows:
            return []
        columns = {k: rows.column(f) for k, f in zip(self._keys, self._key_fields, strict=True)}
        columns |= {name: rows.column(field) for field, name in self._fields.items()}
        columns["__t"] = pa.array(micros, pa.int64())
        table = pa.table({name: groupable(column) for name, column in columns.items()})
        try:
            grouped = self._group(table, windows)
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise RunError(
                f"cannot group or aggregate fields {self._key_fields + list(self._fields)} "
                f"of types {[str(t) for t in table.schema.types]}: {exc}",
                where=self._step,
                hint="group by and aggregate scalar fields (numbers to sum); cast others in a "
                "map step first",
            ) from exc
        return self._read(grouped, windows is not None)

    def _group(
        self, table: pa.Table, windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None
    ) -> pa.Table:
        """``table``'s rows (keys, metric fields, event time ``__t``) grouped by key and window."""
        by = list(self._keys)
        aggs: list[tuple[Any, str]] = [("__t", "min")]
        if windows is not None:
            _, start, end = windows
            table, window_id = rows_in_windows(table, windows, self._keys, "__t", self._session_gap)
            for name, values in (("__s", start), ("__e", end), ("__w", window_id)):
                table = table.append_column(name, pa.array(values, pa.int64()))
            by.append("__w")
            aggs += [("__s", "min"), ("__e", "max")]
        if self._per_row:
            table = table.append_column("__r", pa.array(np.arange(table.num_rows), pa.int64()))
            by.append("__r")
        for metric in self._metric_aggs:
            aggs += [a for a in metric if a not in aggs]
        if self._ordered:  # first/last: Arrow's ordered aggregates then follow event time
            table = table.sort_by("__t")
        return table.group_by(by, use_threads=False).aggregate([aggregation(*a) for a in aggs])

    def _read(self, grouped: pa.Table, windowed: bool) -> list[BatchPartial]:
        def values(name: str) -> list[Any]:
            return grouped.column(name).to_pylist()

        keys = list(zip(*(values(k) for k in self._keys), strict=True)) or [()] * len(grouped)
        earliest = values("__t_min")
        starts = values("__s_min") if windowed else [None] * len(grouped)
        ends = values("__e_max") if windowed else [None] * len(grouped)
        metrics = [
            self._partials(kind, [values(_result_name(*a)) for a in aggs])
            for kind, aggs in zip(self._kinds, self._metric_aggs, strict=True)
        ]
        return [
            BatchPartial(s, e, t, [key, list(parts)])
            for key, s, e, t, *parts in zip(keys, starts, ends, earliest, *metrics, strict=True)
        ]

    @staticmethod
    def _partials(kind: str, results: list[list[Any]]) -> list[Any]:
        """Arrow's results for one metric as the partials :func:`_merge` merges."""
        if kind == "mean":
            return [[total, n] for total, n in zip(*results, strict=True)]
        if kind == "count_distinct":
            return [{_hashable(v) for v in values} for values in results[0]]
        if kind in ("first", "last"):
            return [[t, v] for t, v in zip(*results, strict=True)]
        if kind in _KEEP_VALUES:
            return [[v for v in values if v is not None] for values in results[0]]
        return results[0]


# --------------------------------------------------------------------------- in Beam


class MergePartials(beam.CombineFn):
    """CombineFn over the partials of one key and window: one row of key fields and metrics.

    Its inputs are the values of the window step's elements, ``(window start, window end,
    partial)``: by the time they are combined the window is Beam's, only the partial counts.

    Args:
        key_fields: grouping fields (constant within one Beam key, kept as output columns).
        metrics: output column -> ``count`` or ``sum|min|max|mean|count_distinct(field)``.
    """

    def __init__(self, key_fields: Sequence[str], metrics: Mapping[str, str]) -> None:
        self._key_fields = list(key_fields)
        parsed = [Metric.parse(output, text) for output, text in metrics.items()]
        self._metrics = parsed
        self._outputs = [m.output for m in parsed]
        self._kinds = [m.kind for m in parsed]
        self._floats = tuple(m.output for m in parsed if m.kind in _FLOAT_RESULTS)

    def create_accumulator(self) -> Partial:
        return [None, [_fresh(kind) for kind in self._kinds]]

    def add_input(self, acc: Partial, value: tuple[Any, Any, Partial]) -> Partial:
        return self._add(acc, value[2])

    def merge_accumulators(self, accs: Sequence[Partial]) -> Partial:
        merged = self.create_accumulator()
        for acc in accs:
            merged = self._add(merged, acc)
        return merged

    def _add(self, acc: Partial, partial: Partial) -> Partial:
        key, parts = partial
        if key is None:
            return acc
        acc[0] = key
        acc[1] = [_merge(kind, a, b) for kind, a, b in zip(self._kinds, acc[1], parts, strict=True)]
        return acc

    def row(self, acc: Partial) -> MetricRow | None:
        """The key fields and metrics of ``acc`` (``None``: no partial was merged)."""
        key, partials = acc
        if key is None:
            return None
        values = dict(zip(self._key_fields, key, strict=True))
        for metric, partial in zip(self._metrics, partials, strict=True):
            values[metric.output] = _final(metric, partial)
        return MetricRow(values, self._floats)

    def extract_output(self, acc: Partial) -> pa.Table:
        row = self.row(acc)
        if row is None:
            return pa.table({output: pa.array([], pa.int64()) for output in self._outputs})
        return rows_table([row])


class MergePartialsToRows(MergePartials):
    """:class:`MergePartials` as the window step runs it: each result a :class:`MetricRow`,
    which :class:`ConcatPanes` turns into Arrow with the rest of its bundle."""

    def extract_output(self, acc: Partial) -> MetricRow | None:  # type: ignore[override]
        return self.row(acc)


# The DoFn methods below carry no annotations on purpose: Beam reads them as type hints.


class PaneResults(beam.DoFn):
    """Base of the DoFns that turn combined results into panes: ``(window start, window end,
    pane timing, pane index, table)``, which :class:`ConcatPanes` writes in front of the rows.

    Empty results (an on-time firing after early firings consumed every row in discarding
    mode) are skipped: a row of zeros would read as "nothing happened", which is not what it
    means. Counts the rows as ``aggregates_out``. The front columns are built once per joined
    table, not per result: building four one-row columns per key and window cost ~0.3 ms
    each, which is most of a window step's time when it emits many small groups (per-auction
    counts, per-bidder sessions).
    """

    def __init__(self, step: str) -> None:
        self._step = step
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)

    def pane(
        self,
        start: int | None,
        end: int | None,
        timing: str,
        index: int,
        result: pa.Table | MetricRow | None,
    ) -> Iterator[tuple[int | None, int | None, str, int, pa.Table | MetricRow]]:
        """``result`` (a table of rows, one :class:`MetricRow`, or ``None``) as a pane."""
        rows = 0 if result is None else 1 if isinstance(result, MetricRow) else result.num_rows
        if rows:
            assert self._counters is not None
            self._counters.inc(AGGREGATES_OUT, rows)
            yield start, end, timing, index, result


class FormatPanes(PaneResults):
    """``(key, result table)`` in its Beam window and pane -> its pane (see
    :class:`PaneResults`)."""

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        is_global = isinstance(window, GlobalWindow)
        start = None if is_global else window.start.micros
        end = None if is_global else window.end.micros
        yield from self.pane(start, end, _TIMINGS[pane.timing], pane.index, element[1])


def with_panes(results: Sequence[tuple[Any, Any, str, int, pa.Table]]) -> pa.Table:
    """The tables of :class:`FormatPanes` results joined, with the window and pane columns in
    front. Window and pane columns the rows already had (rows an earlier window step
    aggregated, now ranked or aggregated again in the same windows) are replaced."""
    payloads = [r[4] for r in results]
    if isinstance(payloads[0], MetricRow):
        table, sizes = rows_table(payloads), [1] * len(payloads)
    else:
        table = pa.concat_tables(payloads, promote_options="permissive")
        sizes = [p.num_rows for p in payloads]
    owner = pa.array(np.repeat(np.arange(len(results)), sizes))
    return with_front(
        table,
        pa.array([r[0] for r in results], pa.int64()).take(owner),
        pa.array([r[1] for r in results], pa.int64()).take(owner),
        pa.array([r[2] for r in results], pa.string()).take(owner),
        pa.array([r[3] for r in results], pa.int64()).take(owner),
    )


def with_front(
    table: pa.Table, starts: pa.Array, ends: pa.Array, timings: pa.Array, indexes: pa.Array
) -> pa.Table:
    """``table`` with the window (µs) and pane columns of each row in front, replacing window
    and pane columns it already had."""
    table = table.drop_columns([c for c in _FRONT if c in table.column_names])
    front = {
        WINDOW_START: starts.cast(_TIME),
        WINDOW_END: ends.cast(_TIME),
        PANE_TIMING: timings,
        PANE_INDEX: indexes,
    }
    for i, (name, column) in enumerate(front.items()):
        table = table.add_column(i, name, column)
    return table


class ConcatPanes(beam.DoFn):
    """Join the aggregate rows of one bundle into one table per window and pane, with the
    window and pane columns in front (:func:`with_panes`).

    Each table is emitted at the end of the bundle in its window and pane, with the earliest
    timestamp of what it joins, so no element moves later in event time. In batch the rows
    were put in the global window first: one table per bundle.
    """

    def start_bundle(self) -> None:
        self._panes: dict[tuple[Any, Any], tuple[list[tuple], Any]] = {}

    def process(
        self,
        result,
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
    ):
        results, earliest = self._panes.get((window, pane), ([], timestamp))
        results.append(result)
        self._panes[(window, pane)] = (results, min(earliest, timestamp))

    def finish_bundle(self):
        for (window, pane), (results, earliest) in self._panes.items():
            yield WindowedValue(with_panes(results), earliest, (window,), pane)
        self._panes = {}
