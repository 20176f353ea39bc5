"""The ``top`` step: per window (and key), the N rows with the greatest (or least) value of an
expression, kept whole: arg-max, top-N, "every bid at the window's highest price" (Nexmark q7)
or "the auctions with the most bids" (q5).

It is the window step with a different aggregate (:class:`TopRows`, an
:class:`~transforms.window_aggregate.Aggregation`): the same event time, lateness gate, window
assignment, triggers, panes, dead letters and counts (see :mod:`transforms.windowing`). What
it computes, in two halves so it scales as a combiner does:

* in each Arrow batch, per key and window, the rows that can still be among the top
  (:func:`top_rows` over the batch, sorted and cut with numpy: no per-row Python);
* in Beam, per key and window, :class:`MergeTop` merges those candidate tables the same way
  (``top_rows`` of their union) and emits the survivors as one Arrow table.

In batch, when each window fires once at the end, the second half is done in Arrow instead
(:meth:`TopRows.ranked_windows`, see ``Window._arrow_panes``): a batch's candidates, one
table per hash partition of their keys, meet the other batches' after one GroupByKey and are
ranked per key and window at once, sessions merged there; Beam never sees one element per
key and window.

Ranking is exact however the rows were split into batches: the top N of a union is the top N
of the union of each part's top N, with ties kept whole (``ties: all``) or broken by a total
order that does not depend on the split (``ties: first``).

Order and ties. Rows are ranked by ``value`` (descending for ``greatest``), then by earlier
event time, then by the values of their other columns of scalar type (numbers, text, times,
booleans, in schema order, the source position among them when the rows carry one); nulls
sort last. The rank is SQL's ``RANK()``: rows with equal values share it. ``ties: all`` keeps
every row whose rank is below N (so N=1 keeps all the rows tied for the top value, and more
than N rows can come out); ``ties: first`` keeps exactly the first N rows in that order.
Rows identical in every scalar column are interchangeable, and which of them ``first`` keeps
does not show in the output.

Rows whose value is null, NaN, or cannot be computed (the expression fails on the batch) go
to the dead letters with rule ``value``; they cannot be ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import RunError
from transforms.aggregate import groupable
from transforms.expressions import ExpressionError, parse
from transforms.window_aggregate import BatchPartial, rows_in_windows

VALUE = "value"
"""Dead-letter rule (and ``<step>/rule/value`` counter) for rows whose value cannot be ranked."""

_VALUE, _TIME = "__bw_value", "__bw_time"
"""Hidden columns the candidate tables carry: the ranked value and the event time (µs)."""

_WINDOW_COLUMNS = ("__bw_s", "__bw_e", "__bw_w", "__bw_r")
"""Hidden columns of one batch's ranking: window start and end, window (or proto-session)
and, for triggers that count rows, the row."""

_RANKABLE = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_boolean,
    pa.types.is_temporal,
)


def _rankable(kind: pa.DataType) -> bool:
    return any(test(kind) for test in _RANKABLE)


def _same_as_previous(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """For each row after the first: is it equal to the row before (nulls equal to nulls)?"""
    if len(column) < 2:
        return np.zeros(max(0, len(column) - 1), bool)
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    column = groupable(column)
    a, b = column.slice(1), column.slice(0, len(column) - 1)
    equal = pc.fill_null(pc.equal(a, b), False).to_numpy(zero_copy_only=False)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b)).to_numpy(zero_copy_only=False)
    return equal | both_null


class Ranked(NamedTuple):
    """A table sorted by group and rank, which rows stay, and where each group begins."""

    ordered: pa.Table
    keep: np.ndarray
    group_starts: np.ndarray

    def kept(self) -> tuple[pa.Table, np.ndarray]:
        """The rows that stay, and the index of each one's group."""
        group = np.zeros(self.ordered.num_rows, np.int64)
        group[self.group_starts[1:]] = 1
        return self.ordered.filter(pa.array(self.keep)), np.cumsum(group)[self.keep]


def top_rows(
    table: pa.Table,
    groups: Sequence[str],
    *,
    n: int,
    ties: Literal["all", "first"],
    descending: bool,
) -> Ranked:
    """Rank the rows of ``table`` (which holds ``__bw_value`` and ``__bw_time``) within each
    group of ``groups``; see the module docstring for the order and ties."""
    tiebreak = [
        (name, "ascending")
        for name, kind in zip(table.column_names, table.schema.types, strict=True)
        if name not in (_VALUE, _TIME, *groups) and _rankable(kind)
    ]
    keys = [
        *[(g, "ascending") for g in groups],
        (_VALUE, "descending" if descending else "ascending"),
        (_TIME, "ascending"),
        *tiebreak,
    ]
    ordered = table.take(pc.sort_indices(table, sort_keys=keys))  # nulls last: the default
    size = ordered.num_rows
    same_group = np.ones(max(0, size - 1), bool)
    for g in groups:
        same_group &= _same_as_previous(ordered.column(g))
    new_group = np.concatenate([[True], ~same_group]) if size else np.zeros(0, bool)
    position = np.arange(size)
    group_start = np.maximum.accumulate(np.where(new_group, position, 0))
    if ties == "all":  # RANK(): where the row's run of equal values begins
        new_value = new_group.copy()
        new_value[1:] |= ~_same_as_previous(ordered.column(_VALUE))
        rank = np.maximum.accumulate(np.where(new_value, position, 0)) - group_start
    else:
        rank = position - group_start
    return Ranked(ordered, rank < n, np.flatnonzero(new_group))


@dataclass(frozen=True)
class TopRows:
    """The top step's :class:`~transforms.window_aggregate.Aggregation`.

    Args:
        key_fields: rank within each value of these fields (none: the whole window).
        value: safe expression (or field) whose value ranks the rows.
        n: rows to keep per key and window (see ``ties``).
        order: ``greatest`` (descending) or ``least`` values first.
        ties: ``all`` keeps every row ranked below ``n`` (ties share a rank), ``first``
            exactly ``n`` rows.
    """

    key_fields: list[str]
    value: str
    n: int = 1
    order: Literal["greatest", "least"] = "greatest"
    ties: Literal["all", "first"] = "all"
    in_arrow: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, not {self.n}")
        if self.order not in ("greatest", "least"):
            raise ValueError(f"order '{self.order}' is not greatest or least")
        if self.ties not in ("all", "first"):
            raise ValueError(f"ties '{self.ties}' is not all or first")
        parse(self.value)  # refuses a bad expression before anything runs

    @property
    def fields(self) -> list[str]:
        return sorted({name.split(".")[0] for name in parse(self.value).fields})

    def prepare(self, rows: pa.Table) -> tuple[pa.Table, np.ndarray | None, str, str]:
        """``rows`` with the value to rank them by; rows without one are refused."""
        try:
            values = parse(self.value).evaluate(rows)
        except (ExpressionError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problem = f"cannot compute the value '{self.value}' to rank by: {exc}"
            return rows.append_column(_VALUE, pa.nulls(rows.num_rows)), _all(rows), problem, VALUE
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not _rankable(values.type):
            problem = f"the value '{self.value}' is {values.type}, which cannot be ranked"
            return rows.append_column(_VALUE, pa.nulls(rows.num_rows)), _all(rows), problem, VALUE
        bad = pc.is_null(values, nan_is_null=True).to_numpy(zero_copy_only=False)
        rows = rows.append_column(_VALUE, values)
        if not bad.any():
            return rows, None, "", ""
        return rows, bad, f"the value '{self.value}' to rank by is null or NaN", VALUE

    def batch_partials(self, *, session_gap: int | None, per_row: bool, step: str) -> TopPartials:
        return TopPartials(self, session_gap=session_gap, per_row=per_row, step=step)

    def combine_fn(self) -> MergeTop:
        return MergeTop(self)

    def rank(self, table: pa.Table, groups: Sequence[str]) -> Ranked:
        return top_rows(
            table, groups, n=self.n, ties=self.ties, descending=self.order == "greatest"
        )

    def checked_rank(self, table: pa.Table, groups: Sequence[str], step: str) -> Ranked:
        """:meth:`rank`, with a run error naming the step when the keys or value cannot be
        sorted."""
        try:
            return self.rank(table, groups)
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise RunError(
                f"cannot group by {self.key_fields} or rank '{self.value}': {exc}",
                where=step,
                hint="group by and rank scalar values; cast others in a map step first",
            ) from exc

    def ranked_windows(
        self, candidates: pa.Table, session_gap: int | None, step: str
    ) -> tuple[pa.Table, np.ndarray | None, np.ndarray | None]:
        """The batch path's half after the shuffle: all candidate rows of some keys (from
        :meth:`TopPartials.candidates` of every batch) -> the rows that stay, per key and
        window, and each one's window start and end (µs; ``None`` in the global window).

        Fixed, sliding and input windows are the candidates' own. Sessions are merged per key
        as Beam merges them (``[a, b)`` and ``[c, d)`` join when ``c < b``), over the
        proto-sessions' extents: sorted by key and start, a row opens a session when its start
        is at or after every earlier end of its key.
        """
        keys = self.key_fields
        if "__bw_s" not in candidates.column_names:  # the global window
            kept, _ = self.checked_rank(candidates, keys, step).kept()
            return kept.drop_columns([_VALUE, _TIME]), None, None
        if session_gap is None:
            table = candidates.append_column("__bw_w", candidates.column("__bw_s"))
        else:
            order = pc.sort_indices(
                candidates, sort_keys=[*((k, "ascending") for k in keys), ("__bw_s", "ascending")]
            )
            table = candidates.take(order)
            session = _sessions(table, keys)
            table = table.append_column("__bw_w", pa.array(session, pa.int64()))
        ranked = self.checked_rank(table, [*keys, "__bw_w"], step)
        ordered, group_starts = ranked.ordered, ranked.group_starts
        group = np.zeros(ordered.num_rows, np.int64)
        group[group_starts[1:]] = 1
        group = np.cumsum(group)[ranked.keep]
        starts = np.minimum.reduceat(ordered.column("__bw_s").to_numpy(), group_starts)[group]
        ends = np.maximum.reduceat(ordered.column("__bw_e").to_numpy(), group_starts)[group]
        kept = ordered.filter(pa.array(ranked.keep))
        hidden = [c for c in kept.column_names if c in (_VALUE, _TIME) or c.startswith("__bw_")]
        return kept.drop_columns(hidden), starts, ends


def _sessions(table: pa.Table, keys: Sequence[str]) -> np.ndarray:
    """Session number of each row of ``table`` (sorted by ``keys`` and ``__bw_s``; each row's
    proto-session ``[__bw_s, __bw_e)``): a new one where the key changes or the row starts at
    or after the latest end of its key's earlier rows."""
    n = table.num_rows
    if not n:
        return np.zeros(0, np.int64)
    new_key = np.ones(n, bool)
    same = np.ones(n - 1, bool)
    for k in keys:
        same &= _same_as_previous(table.column(k))
    new_key[1:] = ~same
    key = np.cumsum(new_key) - 1
    starts, ends = table.column("__bw_s").to_numpy(), table.column("__bw_e").to_numpy()
    # the latest end so far within each key: ends replaced by their rank, offset by the key
    # so one running maximum over the whole array never crosses from one key to the next
    rank = np.empty(n, np.int64)
    rank[np.argsort(ends, kind="stable")] = np.arange(n)
    latest = np.maximum.accumulate(key * n + rank) - key * n
    previous = np.empty(n, np.int64)
    previous[1:] = np.sort(ends)[latest[:-1]]
    return np.cumsum(new_key | (starts >= previous)) - 1


def _all(rows: pa.Table) -> np.ndarray:
    return np.ones(rows.num_rows, bool)


class TopPartials:
    """In-batch half of the top step: per key and window, the candidate rows of one batch."""

    def __init__(self, top: TopRows, *, session_gap: int | None, per_row: bool, step: str) -> None:
        self._top = top
        self.key_fields = top.key_fields
        self._session_gap = session_gap
        self._per_row = per_row
        self._step = step

    def partials(
        self,
        rows: pa.Table,
        micros: np.ndarray,
        windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> list[BatchPartial]:
        """Partials ``[key values, candidate table]`` of ``rows`` (event times ``micros``);
        ``windows`` as :meth:`transforms.window_aggregate.BatchPartials.partials` takes it."""
        if not rows.num_rows:
            return []
        return self._read(self._rank(rows, micros, windows), windows is not None)

    def candidates(
        self,
        rows: pa.Table,
        micros: np.ndarray,
        windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> pa.Table:
        """The batch path's half in the batch (see :meth:`TopRows.ranked_windows`): ``rows``'
        candidate rows in one table, each with its group's window extent (``__bw_s``,
        ``__bw_e``: for a session, the proto-session of the batch's rows of its key, all of
        them counted; none in the global window)."""
        ranked = self._rank(rows, micros, windows)
        ordered, starts = ranked.ordered, ranked.group_starts
        kept = ordered.filter(pa.array(ranked.keep))
        if windows is None:  # the global window
            return kept
        group = np.zeros(ordered.num_rows, np.int64)
        group[starts[1:]] = 1
        group = np.cumsum(group)[ranked.keep]
        extents = {
            "__bw_s": np.minimum.reduceat(ordered.column("__bw_s").to_numpy(), starts)[group],
            "__bw_e": np.maximum.reduceat(ordered.column("__bw_e").to_numpy(), starts)[group],
        }
        kept = kept.drop_columns([c for c in kept.column_names if c in _WINDOW_COLUMNS])
        for name, values in extents.items():
            kept = kept.append_column(name, pa.array(values, pa.int64()))
        return kept

    def _rank(
        self,
        rows: pa.Table,
        micros: np.ndarray,
        windows: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    ) -> Ranked:
        table = rows.append_column(_TIME, pa.array(micros, pa.int64()))
        extra: dict[str, np.ndarray] = {}
        if windows is not None:
            _, start, end = windows
            table, window_id = rows_in_windows(
                table, windows, self._top.key_fields, _TIME, self._session_gap
            )
            extra = {"__bw_s": start, "__bw_e": end, "__bw_w": window_id}
        if self._per_row:
            extra["__bw_r"] = np.arange(table.num_rows)
        for name, values in extra.items():
            table = table.append_column(name, pa.array(values, pa.int64()))
        groups = [*self._top.key_fields, *(g for g in ("__bw_w", "__bw_r") if g in extra)]
        return self._top.checked_rank(table, groups, self._step)

    def _read(self, ranked: Ranked, windowed: bool) -> list[BatchPartial]:
        """One partial per group: its candidate rows, its window and earliest event time (over
        all its rows: a session's extent counts rows that are not among its top)."""
        ordered, starts = ranked.ordered, ranked.group_starts

        def per_group(name: str, reduce: np.ufunc) -> list[int]:
            return reduce.reduceat(ordered.column(name).to_numpy(), starts).tolist()

        earliest = per_group(_TIME, np.minimum)
        window_starts = per_group("__bw_s", np.minimum) if windowed else [None] * len(starts)
        window_ends = per_group("__bw_e", np.maximum) if windowed else [None] * len(starts)
        kept, group = ranked.kept()
        kept = kept.drop_columns([c for c in kept.column_names if c in _WINDOW_COLUMNS])
        cuts = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), kept.num_rows]
        firsts = pa.array(cuts[:-1], pa.int64())
        keys = [kept.column(k).take(firsts).to_pylist() for k in self._top.key_fields]
        return [
            BatchPartial(
                window_starts[g],
                window_ends[g],
                earliest[g],
                # its own buffers: a slice pickles (as Beam encodes a partial) with the whole
                # batch's, which made the elements of a batch quadratic in its groups (24 GB
                # resident for Nexmark q9's 1M events, ~60k auctions)
                [[values[g] for values in keys], kept.take(np.arange(a, b))],
            )
            for g, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))
        ]


class MergeTop(beam.CombineFn):
    """CombineFn over the partials of one key and window: the top rows of all of them.

    The accumulator is ``[key values, candidate table]`` (``None`` before the first partial);
    every merge cuts it back to the candidates, so it holds about ``n`` rows (more with
    ties).
    """

    def __init__(self, top: TopRows) -> None:
        self._top = top

    def create_accumulator(self) -> list[Any]:
        return [None, None]

    def add_input(self, acc: list[Any], value: tuple[Any, Any, list[Any]]) -> list[Any]:
        return self._merge([acc, value[2]])

    def merge_accumulators(self, accs: Sequence[list[Any]]) -> list[Any]:
        return self._merge(accs)

    def _merge(self, parts: Sequence[list[Any]]) -> list[Any]:
        tables = [table for _, table in parts if table is not None]
        if not tables:
            return [None, None]
        key = next(key for key, table in parts if table is not None)
        union = pa.concat_tables(tables, promote_options="permissive")
        return [key, self._top.rank(union, []).kept()[0]]

    def extract_output(self, acc: list[Any]) -> pa.Table:
        _, table = acc
        if table is None:
            return pa.table({})
        return table.drop_columns([_VALUE, _TIME])
