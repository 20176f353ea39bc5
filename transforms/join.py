"""The ``join`` step: two inputs of Arrow batches joined on key fields, per event-time window
(fixed, sliding, session) or, in the global window, among rows whose lifetimes overlap.

Shape of the step::

    left batches ─┐  per side: rows with a usable key and event time (the rest ─▶ dead letters),
    right batches ┘  internal columns: normalised keys, event time, expiry
        bounded:   ──▶ (hash partition, (side, rows)) ──▶ GroupByKey ──▶ one Arrow hash join
                       per partition (windows assigned there, sessions merged across sides)
        unbounded: ──▶ (join key, (side, rows)) ──▶ stateful DoFn in the global window:
                       rows buffered in state, an event-time timer per key; windows joined
                       when they close, global-window rows joined on arrival and dropped
                       when their lifetime ends
    ──▶ joined rows (one Arrow table per partition / key firing), in the global window

What a pair is. Two rows pair when their keys are equal, they lie in the same window, and the
optional ``where`` condition holds on the joined row. In the global window a row lives from its
event time until ``keep`` seconds later or until the time in its ``keep_until`` field (never
ending when neither is given); two rows pair when their lifetimes overlap
(``t_right < expiry_left`` and ``t_left < expiry_right``). That is Nexmark's "bids within the
auction's lifetime" (``keep_until: expires`` on the auction) and query 3's "keep the person
for a while, auctions waiting for their person" (``keep`` on persons).

Why two paths, and why they agree. A bounded input is complete, so the bounded path hashes
rows by key into partitions and joins each partition once with Arrow's hash join: the same
pairs as a CoGroupByKey per key and window (every row of a key meets every other row of that
key in its windows), without one Beam element per row. An unbounded input never ends, so the
streaming path keeps each key's rows in state until their windows close (timer at
``window end + allowed_lateness``) or their lifetime ends (timer at the expiry), as Beam's own
Nexmark query 3 does with state and timers. Both call the same :meth:`Joiner.join` on the rows
of one key (or partition) and window, so a stream whose rows all arrive in time gives the same
pairs as the bounded run.

Where rows end up. Rows without a key value (rule ``join_key``), a usable event time or
expiry (``event_time``), or a needed field (``missing_field``) go to the dead letters; so do
rows arriving after their window (or lifetime) closed for their key (``late``). Each input row
is counted once: ``rows_out`` when it joined at least once (a left join also counts the left
rows it emits unmatched), ``rows_filtered`` when it found no partner (or ``rule/unmatched`` dead
letters with ``on_unmatched: reject``), so ``rows_in = rows_out + rows_filtered +
rows_dead_lettered``; ``rows_joined`` counts the rows emitted.

Lateness, as a key sees it. The streaming path learns the watermark from its own timers, per
key: a row is late when its key's window (or, in the global window, its lifetime) has already
fired. A row for a window in which its key had no rows yet cannot be judged, so it is joined
when its (past) timer fires, as a late result, rather than dropped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import TupleCoder, VarIntCoder
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import (
    BagStateSpec,
    ReadModifyWriteStateSpec,
    TimerSpec,
    on_timer,
)
from apache_beam.transforms.window import GlobalWindow, GlobalWindows, Sessions, WindowFn
from apache_beam.utils.timestamp import Timestamp

from connectors.arrow_coder import ArrowTableCoder
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
from connectors.panes import is_streaming
from connectors.records import dead_letters_for_rows
from transforms.expressions import parse
from transforms.join_columns import SideColumns, output_columns
from transforms.partitions import by_partition, partition_of
from transforms.step import DEAD_LETTERS, ROWS
from transforms.windowing import Closing, event_micros

LEFT, RIGHT = 0, 1
JOIN_KEY, EVENT_TIME, MISSING_FIELD, LATE, UNMATCHED = (
    "join_key",
    "event_time",
    "missing_field",
    "late",
    "unmatched",
)
"""Dead-letter rules of the join step (also counted as ``<step>/rule/<rule>``)."""
ROWS_JOINED = "rows_joined"

_T, _EXP, _WS, _WE, _HIT, _ROW = "_bwj_t", "_bwj_exp", "_bwj_ws", "_bwj_we", "_bwj_hit", "_bwj_row"
_INTERNAL = "_bwj_"
_NEVER = np.iinfo(np.int64).max
_TIME = pa.timestamp("us", tz="UTC")
_END_OF_TIME = GlobalWindow().max_timestamp().micros


def _key(i: int) -> str:
    return f"_bwj_k{i}"


@dataclass(frozen=True)
class JoinSide:
    """One input of a join: its key fields, event time, which fields to keep, and (global
    window) how long its rows wait for partners: ``keep`` seconds, or until ``keep_until``."""

    name: str
    keys: tuple[str, ...]
    event_time: str | None = None
    fields: tuple[str, ...] | None = None
    prefix: str = ""
    keep: float | None = None
    keep_until: str | None = None

    @property
    def columns(self) -> SideColumns:
        return SideColumns(self.name, self.keys, self.fields, self.prefix)

    def needed(self) -> list[str]:
        named = [*self.keys, *(self.fields or ())]
        named += [f for f in (self.event_time, self.keep_until) if f]
        return list(dict.fromkeys(named))


def _normal_key(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Key values in one type per kind (int64, float64, string, binary), so that an int32 key
    meets an int64 one; other types are kept."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind):
        return column.cast(pa.float64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.cast(pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.cast(pa.binary())
    return column


def strip_internal(table: pa.Table) -> pa.Table:
    """The rows as they entered the step (the join's own columns removed)."""
    return table.select([n for n in table.column_names if not n.startswith(_INTERNAL)])


class SidePrep:
    """Finds the rows of one side's batch that can be joined, with their normalised keys,
    event times and expiries as internal columns; the others become dead letters."""

    def __init__(self, side: JoinSide, *, step: str, run_id: str) -> None:
        self._side = side
        self._step = step
        self._run_id = run_id

    def letters(self, rows: pa.Table, errors: Sequence[str], rule: str) -> pa.Table:
        return dead_letters_for_rows(
            strip_internal(rows),
            errors=errors,
            rules=[rule] * rows.num_rows,
            step=self._step,
            run_id=self._run_id,
        )

    def prepare(self, table: pa.Table, element_micros: int) -> tuple[pa.Table, list[pa.Table]]:
        side, n = self._side, table.num_rows
        missing = [f for f in side.needed() if f not in table.column_names]
        if missing:
            error = f"{side.name}: field(s) {', '.join(missing)} missing from this batch"
            return table.slice(0, 0), [self.letters(table, [error] * n, MISSING_FIELD)]
        keys = [_normal_key(table.column(k)) for k in side.keys]
        null = np.zeros(n, bool)
        for column in keys:
            null |= pc.is_null(column).to_numpy(zero_copy_only=False)
        if side.event_time:
            micros, valid, problem = event_micros(table.column(side.event_time), side.event_time)
        else:
            micros, valid, problem = np.full(n, element_micros, np.int64), np.ones(n, bool), ""
        expiry, until_ok, until_problem = np.full(n, _NEVER, np.int64), np.ones(n, bool), ""
        if side.keep_until:
            expiry, until_ok, until_problem = event_micros(
                table.column(side.keep_until), side.keep_until
            )
        elif side.keep is not None:
            expiry = micros + round(side.keep * 1_000_000)
        error = f"{side.name}: join key '{'+'.join(side.keys)}' is null"
        letters = [
            self.letters(table.filter(pa.array(mask)), [why] * int(mask.sum()), rule)
            for mask, why, rule in (
                (null, error, JOIN_KEY),
                (~null & ~valid, problem, EVENT_TIME),
                (~null & valid & ~until_ok, until_problem, EVENT_TIME),
            )
            if mask.any()
        ]
        ok = ~null & valid & until_ok
        mask = pa.array(ok)
        rows = table.filter(mask)
        for i, column in enumerate(keys):
            rows = rows.append_column(_key(i), column.filter(mask))
        rows = rows.append_column(_T, pa.array(micros[ok], pa.int64()))
        rows = rows.append_column(_EXP, pa.array(expiry[ok], pa.int64()))
        return rows, letters


# --------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class JoinWindow:
    """Where pairs may form: ``closing`` for fixed/sliding/session windows (None: global)."""

    closing: Closing | None

    @staticmethod
    def of(window_fn: WindowFn, allowed_lateness: float) -> JoinWindow:
        if isinstance(window_fn, GlobalWindows):
            return JoinWindow(None)
        return JoinWindow(Closing.of(window_fn, round(allowed_lateness * 1_000_000), 1))

    @property
    def windowed(self) -> bool:
        return self.closing is not None

    def assign(
        self, left: pa.Table, right: pa.Table
    ) -> tuple[
        tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]
    ]:
        """Per side, ``(row, window start, window end)`` (µs; 0, 0 in the global window): a
        row once per window it is in. Sessions are merged per key across both sides."""
        closing = self.closing
        if closing is None:
            return _whole(left), _whole(right)
        if closing.kind != "session":
            return closing.windows(_times(left)), closing.windows(_times(right))
        starts, ends = _sessions(left, right, closing.size)
        n = left.num_rows
        return (
            (np.arange(n), starts[:n], ends[:n]),
            (np.arange(right.num_rows), starts[n:], ends[n:]),
        )

    def closes(self, ends: np.ndarray) -> np.ndarray:
        """When windows ending at ``ends`` close: their last instant (Beam's window
        ``max_timestamp``) plus the allowed lateness, so a window's result is stamped
        inside it."""
        assert self.closing is not None
        return ends - 1 + self.closing.lateness

    def close_of(self, table: pa.Table, after: int | None = None) -> np.ndarray:
        """When each row's last window closes, or (``after``) its first window closing
        later than ``after`` (the maximum int when none does). A session row's window is
        its own ``[t, t + gap)``."""
        assert self.closing is not None
        t = _times(table)
        if after is None or self.closing.kind != "sliding":
            return self.closes(self.closing.latest_window(t)[1])
        rows, _, ends = self.closing.windows(t)
        closes = self.closes(ends)
        later = closes > after
        first = np.full(len(t), np.iinfo(np.int64).max)
        np.minimum.at(first, rows[later], closes[later])
        return first


def _times(table: pa.Table) -> np.ndarray:
    return table.column(_T).to_numpy()


def _whole(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = table.num_rows
    return np.arange(n), np.zeros(n, np.int64), np.zeros(n, np.int64)


def _sessions(left: pa.Table, right: pa.Table, gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Beam's session merging over both sides' rows: per key, rows closer than ``gap`` in
    event time share a session ``[first, last + gap)``. Returns start, end per row (left rows
    first)."""
    n_keys = sum(1 for c in left.column_names if c.startswith("_bwj_k"))
    both = pa.concat_tables(
        [
            t.select([*(_key(i) for i in range(n_keys)), _T])
            for t in (left, _cast_keys_like(right, left, n_keys))
        ]
    )
    total = both.num_rows
    if total == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = pc.sort_indices(
        both, sort_keys=[*((_key(i), "ascending") for i in range(n_keys)), (_T, "ascending")]
    ).to_numpy()
    ordered = both.take(pa.array(order))
    t = ordered.column(_T).to_numpy()
    new = np.ones(total, bool)
    new[1:] = (t[1:] - t[:-1]) >= gap
    for i in range(n_keys):
        key = ordered.column(_key(i)).combine_chunks()
        new[1:] |= pc.not_equal(key.slice(1), key.slice(0, total - 1)).to_numpy(
            zero_copy_only=False
        )
    session = np.cumsum(new) - 1
    firsts = np.flatnonzero(new)
    start = t[firsts][session]
    end = np.maximum.reduceat(t, firsts)[session] + gap
    starts, ends = np.empty(total, np.int64), np.empty(total, np.int64)
    starts[order], ends[order] = start, end
    return starts, ends


def _cast_keys_like(table: pa.Table, like: pa.Table, n_keys: int) -> pa.Table:
    """``table`` with key columns of ``like``'s types (as text when the types differ)."""
    for i in range(n_keys):
        name = _key(i)
        ours, theirs = table.schema.field(name).type, like.schema.field(name).type
        if ours != theirs:
            index = table.column_names.index(name)
            table = table.set_column(index, name, table.column(name).cast(pa.string()))
    return table


# --------------------------------------------------------------------------- the join


class Joined(NamedTuple):
    """What one :meth:`Joiner.join` made: the output rows and, per input row, whether it
    joined (``left_hit``, ``right_hit``)."""

    rows: pa.Table | None
    left_hit: np.ndarray
    right_hit: np.ndarray


@dataclass
class Joiner:
    """The join of one key (or partition) of rows: shared by the bounded and streaming paths.

    Args:
        left, right: the two sides.
        how: ``inner`` or ``left`` (unmatched left rows are emitted with null right columns,
            once per window they are in).
        window: where pairs may form.
        where: a condition on the joined row (an expression over the output columns); a left
            join emits a left row unmatched when no pair passes it.
    """

    left: JoinSide
    right: JoinSide
    how: str
    window: JoinWindow
    where: str | None = None
    _plans: dict[tuple, tuple] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._where = parse(self.where) if self.where else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_plans"] = {}
        return state

    def plan(self, left: pa.Schema, right: pa.Schema) -> tuple:
        names = (tuple(left.names), tuple(right.names))
        found = self._plans.get(names)
        if found is None:
            visible = [[n for n in s.names if not n.startswith(_INTERNAL)] for s in (left, right)]
            found = output_columns(
                self.left.columns,
                self.right.columns,
                visible[0],
                visible[1],
                windowed=self.window.windowed,
            )
            self._plans[names] = found
        return found

    def join(
        self,
        left: pa.Table,
        right: pa.Table,
        *,
        how: str | None = None,
        closing_between: tuple[int, int] | None = None,
    ) -> Joined:
        """Join ``left`` with ``right`` (both prepared by :class:`SidePrep`).

        ``closing_between=(after, upto)`` keeps only the windows closing in ``(after, upto]``
        (the streaming path's flush); ``how`` overrides the step's (the streaming path joins
        arriving rows ``inner`` and emits unmatched left rows when they expire).
        """
        how = how or self.how
        n_keys = len(self.left.keys)
        right = _cast_keys_like(right, left, n_keys)
        (lr, lws, lwe), (rr, rws, rwe) = self.window.assign(left, right)
        if closing_between is not None:
            after, upto = closing_between
            lsel = (self.window.closes(lwe) > after) & (self.window.closes(lwe) <= upto)
            rsel = (self.window.closes(rwe) > after) & (self.window.closes(rwe) <= upto)
            lr, lws, lwe = lr[lsel], lws[lsel], lwe[lsel]
            rr, rws, rwe = rr[rsel], rws[rsel], rwe[rsel]
        keys = [_key(i) for i in range(n_keys)]
        small_left = self._small(left, keys, lr, lws, lwe, "l")
        small_right = self._small(right, keys, rr, rws, rwe, "r")
        pairs = small_left.join(
            small_right,
            keys=[*keys, _WS, _WE],
            join_type="inner",
            use_threads=False,
            coalesce_keys=True,
        )
        li = pairs.column("_bwj_l").to_numpy()
        ri = pairs.column("_bwj_r").to_numpy()
        ws, we = pairs.column(_WS).to_numpy(), pairs.column(_WE).to_numpy()
        if not self.window.windowed:  # lifetimes must overlap
            lt, lx = _times(left)[lr[li]], left.column(_EXP).to_numpy()[lr[li]]
            rt, rx = _times(right)[rr[ri]], right.column(_EXP).to_numpy()[rr[ri]]
            meet = (rt < lx) & (lt < rx)
            li, ri, ws, we = li[meet], ri[meet], ws[meet], we[meet]
        left_plan, right_plan = self.plan(left.schema, right.schema)
        out = self._assemble(left, lr[li], right, rr[ri], ws, we, left_plan, right_plan)
        if self._where is not None and out.num_rows:
            keep = self._where.evaluate_predicate(out).to_numpy(zero_copy_only=False)
            out = out.filter(pa.array(keep))
            li, ri = li[keep], ri[keep]
        left_hit = np.zeros(left.num_rows, bool)
        right_hit = np.zeros(right.num_rows, bool)
        left_hit[lr[li]] = True
        right_hit[rr[ri]] = True
        if how == "left":
            alone = np.ones(len(lr), bool)
            alone[li] = False
            if alone.any():
                unmatched = self._assemble(
                    left,
                    lr[alone],
                    None,
                    None,
                    lws[alone],
                    lwe[alone],
                    left_plan,
                    right_plan,
                    right_schema=right.schema,
                )
                out = pa.concat_tables([out, unmatched], promote_options="default")
        return Joined(out if out.num_rows else None, left_hit, right_hit)

    @staticmethod
    def _small(
        table: pa.Table, keys: list[str], rows: np.ndarray, ws: np.ndarray, we: np.ndarray, tag: str
    ) -> pa.Table:
        taken = table.select(keys).take(pa.array(rows, pa.int64()))
        return (
            taken.append_column(_WS, pa.array(ws, pa.int64()))
            .append_column(_WE, pa.array(we, pa.int64()))
            .append_column(f"_bwj_{tag}", pa.array(np.arange(len(rows)), pa.int64()))
        )

    def _assemble(
        self,
        left: pa.Table,
        left_rows: np.ndarray,
        right: pa.Table | None,
        right_rows: np.ndarray | None,
        ws: np.ndarray,
        we: np.ndarray,
        left_plan: list[tuple[str, str]],
        right_plan: list[tuple[str, str]],
        right_schema: pa.Schema | None = None,
    ) -> pa.Table:
        n = len(left_rows)
        columns: dict[str, Any] = {}
        taken_left = left.select([name for name, _ in left_plan]).take(
            pa.array(left_rows, pa.int64())
        )
        for (_, column), values in zip(left_plan, taken_left.columns, strict=True):
            columns[column] = values
        if right is not None and right_rows is not None:
            taken = right.select([name for name, _ in right_plan]).take(
                pa.array(right_rows, pa.int64())
            )
            for (_, column), values in zip(right_plan, taken.columns, strict=True):
                columns[column] = values
        else:
            assert right_schema is not None
            for name, column in right_plan:
                columns[column] = pa.nulls(n, right_schema.field(name).type)
        if self.window.windowed:
            columns["window_start"] = pa.array(ws, pa.int64()).cast(_TIME)
            columns["window_end"] = pa.array(we, pa.int64()).cast(_TIME)
        return pa.table(columns)


# --------------------------------------------------------------------------- counting


class _Tally:
    """Counts one step's rows (see the module docstring) and makes its unmatched dead letters."""

    def __init__(self, step: str, on_unmatched: str, preps: tuple[SidePrep, SidePrep]) -> None:
        self.step = step
        self._on_unmatched = on_unmatched
        self.preps = preps
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self.step)

    def arrived(self, n: int, letters: list[pa.Table]) -> Iterator[Any]:
        counters = self._counters
        assert counters is not None
        counters.inc(ROWS_IN, n)
        TALLY.add(self.step, n)
        yield from self.dead(letters)

    def dead(self, letters: list[pa.Table]) -> Iterator[Any]:
        counters = self._counters
        assert counters is not None
        for table in letters:
            if table.num_rows:
                counters.inc(ROWS_DEAD, table.num_rows)
                for rule in pc.unique(table.column("rule")).to_pylist():
                    n = pc.sum(pc.equal(table.column("rule"), rule)).as_py()
                    counters.inc(rule_counter(rule), n)
                yield beam.pvalue.TaggedOutput(DEAD_LETTERS, table)

    def joined(self, rows: pa.Table | None) -> Iterator[pa.Table]:
        if rows is not None and rows.num_rows:
            assert self._counters is not None
            self._counters.inc(ROWS_JOINED, rows.num_rows)
            yield rows

    def settled(
        self, side: int, rows: pa.Table, hit: np.ndarray, emitted_alone: bool, why: str
    ) -> Iterator[Any]:
        """``rows`` of ``side`` are done: joined (``hit``), emitted unmatched by a left join
        (``emitted_alone``), or unmatched: filtered or, with ``on_unmatched: reject``, dead."""
        counters = self._counters
        assert counters is not None
        done = int(hit.sum()) if not emitted_alone else rows.num_rows
        counters.inc(ROWS_OUT, done)
        alone = rows.num_rows - done
        if not alone:
            return
        if self._on_unmatched == "drop":
            counters.inc(ROWS_FILTERED, alone)
            return
        unmatched = rows.filter(pa.array(~hit))
        yield from self.dead(
            [self.preps[side].letters(unmatched, [why] * unmatched.num_rows, UNMATCHED)]
        )


# --------------------------------------------------------------------------- bounded path


class _PartitionFn(beam.DoFn):
    """Bounded path: a side's batch -> its joinable rows, one element per partition (empty
    ones too, so every partition learns both sides' schemas), and dead letters."""

    def __init__(self, side: int, prep: SidePrep, n_keys: int, partitions: int, tally: _Tally):
        self._side, self._prep, self._n_keys = side, prep, n_keys
        self._partitions, self._tally = partitions, tally

    def setup(self):
        self._tally.setup()

    def process(self, table, timestamp=beam.DoFn.TimestampParam):
        rows, letters = self._prep.prepare(table, _micros_of(timestamp))
        yield from self._tally.arrived(table.num_rows, letters)
        part = partition_of(rows, [_key(i) for i in range(self._n_keys)], self._partitions)
        for p, slice_ in by_partition(rows, part, self._partitions, empty=True):
            yield (p, (self._side, slice_))


def _micros_of(timestamp: Timestamp) -> int:
    return min(max(timestamp.micros, -_END_OF_TIME), _END_OF_TIME)


class _JoinPartitionFn(beam.DoFn):
    """Bounded path: join one partition's rows (all of them: the input is complete)."""

    def __init__(self, joiner: Joiner, tally: _Tally):
        self._joiner, self._tally = joiner, tally

    def setup(self):
        self._tally.setup()

    def process(self, element):
        _, parts = element
        sides = [[t for s, t in parts if s == side] for side in (LEFT, RIGHT)]
        # every partition gets a (maybe empty) table of every batch of both sides; a side
        # with no batch at all (everything filtered upstream) gets an empty table
        tables = [pa.concat_tables(t, promote_options="default") if t else None for t in sides]
        left, right = (
            t
            if t is not None
            else _empty_like(self._tally.step, tables[1 - i].schema, self._joiner, i, learned=False)
            for i, t in enumerate(tables)
        )
        joined = self._joiner.join(left, right)
        yield from self._tally.joined(joined.rows)
        yield from _settle(
            self._tally, self._joiner, left, right, joined.left_hit, joined.right_hit
        )


def _settle(
    tally: _Tally,
    joiner: Joiner,
    left: pa.Table,
    right: pa.Table,
    left_hit: np.ndarray,
    right_hit: np.ndarray,
) -> Iterator[Any]:
    yield from tally.settled(
        LEFT, left, left_hit, joiner.how == "left", unmatched_reason(joiner, LEFT)
    )
    yield from tally.settled(RIGHT, right, right_hit, False, unmatched_reason(joiner, RIGHT))


def unmatched_reason(joiner: Joiner, side: int) -> str:
    """The dead-letter message of a ``side`` row that joined nothing."""
    other = (joiner.right, joiner.left)[side].name
    where = "in the same window" if joiner.window.windowed else "while both were kept"
    return f"unmatched: no {other} row with the same key {where}"


# --------------------------------------------------------------------------- streaming path


class _KeyFn(beam.DoFn):
    """Streaming path: a side's batch -> its joinable rows, one element per join key."""

    def __init__(self, side: int, prep: SidePrep, n_keys: int, tally: _Tally):
        self._side, self._prep, self._n_keys, self._tally = side, prep, n_keys, tally

    def setup(self):
        self._tally.setup()

    def process(self, table, timestamp=beam.DoFn.TimestampParam):
        rows, letters = self._prep.prepare(table, _micros_of(timestamp))
        yield from self._tally.arrived(table.num_rows, letters)
        yield from self._by_key(rows)

    def _by_key(self, rows: pa.Table) -> Iterator[tuple[tuple[str, ...], tuple[int, pa.Table]]]:
        if not rows.num_rows:
            return
        keys = [_key(i) for i in range(self._n_keys)]
        indexed = rows.select(keys).append_column(_ROW, pa.array(np.arange(rows.num_rows)))
        groups = indexed.group_by(keys, use_threads=False).aggregate([(_ROW, "list")])
        members = groups.column(f"{_ROW}_list")
        key_values = [groups.column(k).to_pylist() for k in keys]
        for g in range(groups.num_rows):
            state_key = tuple(str(values[g]) for values in key_values)
            taken = rows.take(members[g].values)
            yield state_key, (self._side, taken)


class _StreamJoinFn(beam.DoFn):
    """Streaming path: one join key's rows in state, joined by event-time timers.

    Windowed: rows wait in ``ROWS`` until their windows close; the timer fires at the earliest
    closing (``window end + allowed lateness``), joins the windows closing then and forgets
    the rows whose last window closed. Global window: an arriving row joins the other side's
    kept rows at once (lifetimes overlapping), then waits until its expiry (the timer) unless
    the other side is ``unique`` and it found its one partner.
    """

    ROWS_STATE = BagStateSpec("rows", TupleCoder([VarIntCoder(), ArrowTableCoder()]))
    CLOSED = ReadModifyWriteStateSpec("closed", VarIntCoder())
    ARMED = ReadModifyWriteStateSpec("armed", VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, joiner: Joiner, unique: str | None, tally: _Tally):
        self._joiner, self._unique, self._tally = joiner, unique, tally

    def setup(self):
        self._tally.setup()

    def process(
        self,
        element,
        kept=beam.DoFn.StateParam(ROWS_STATE),  # noqa: B008
        closed=beam.DoFn.StateParam(CLOSED),  # noqa: B008
        armed=beam.DoFn.StateParam(ARMED),  # noqa: B008
        flush=beam.DoFn.TimerParam(FLUSH),  # noqa: B008
    ):
        _, (side, rows) = element
        fired = closed.read()
        rows, late = self._late(side, rows, fired)
        if late is not None:
            yield from self._tally.dead([late])
        after = -_END_OF_TIME - 1 if fired is None else fired
        yield from self._arrive(side, rows, after, kept, armed, flush)

    def _arrive(
        self, side: int, rows: pa.Table, after: int, kept: Any, armed: Any, flush: Any
    ) -> Iterator[Any]:
        """Keep arriving rows (global window: after joining them at once) and arm the timer
        for the first of their windows closing after ``after`` (or their expiry)."""
        if not rows.num_rows:
            return
        rows = rows.append_column(_HIT, pa.array(np.zeros(rows.num_rows, bool)))
        _SCHEMAS[(self._tally.step, side)] = rows.schema
        if not self._joiner.window.windowed:
            rows = yield from self._meet(side, rows, kept)
            if not rows.num_rows:
                return
        kept.add((side, rows))
        self._arm(flush, armed, int(self._ends(rows, after=after).min()))

    def _late(self, side: int, rows: pa.Table, closed: int | None) -> tuple[pa.Table, Any]:
        """Rows whose window (lifetime) had already closed for this key: dead letters."""
        if closed is None:
            return rows, None
        late = self._ends(rows) <= closed
        if not late.any():
            return rows, None
        what = "window" if self._joiner.window.windowed else "lifetime"
        error = (
            f"late: the {what} of this row had closed for its join key (the key's timer had "
            f"fired at {Timestamp(micros=closed).to_rfc3339()}) when it arrived"
        )
        prep = self._tally.preps[side]
        dead = rows.filter(pa.array(late))
        return rows.filter(pa.array(~late)), prep.letters(dead, [error] * dead.num_rows, LATE)

    def _ends(self, rows: pa.Table, after: int | None = None) -> np.ndarray:
        """When rows stop waiting: their expiry (global window), or when their last window
        closes, or (``after``) when their next window closing after ``after`` does."""
        window = self._joiner.window
        if not window.windowed:
            return np.minimum(rows.column(_EXP).to_numpy(), _END_OF_TIME)
        return window.close_of(rows, after)

    def _row_ends(self, left: pa.Table, right: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """When each kept row is done: as :meth:`_ends`, except that a session row is done
        when its merged session (over both sides' rows) closes."""
        window = self._joiner.window
        if window.windowed and window.closing.kind == "session":
            (_, _, left_ends), (_, _, right_ends) = window.assign(left, right)
            return window.closes(left_ends), window.closes(right_ends)
        return self._ends(left), self._ends(right)

    def _meet(self, side: int, rows: pa.Table, kept: Any) -> Any:
        """Global window: join arriving rows with the other side's kept rows at once."""
        entries = list(kept.read())
        other = [t for s, t in entries if s != side]
        if not other:
            return rows
        others = pa.concat_tables(other, promote_options="default")
        left, right = (rows, others) if side == LEFT else (others, rows)
        joined = self._joiner.join(left, right, how="inner")
        yield from self._tally.joined(joined.rows)
        mine, theirs = (
            (joined.left_hit, joined.right_hit)
            if side == LEFT
            else (joined.right_hit, joined.left_hit)
        )
        if theirs.any():
            old = others.column(_HIT).to_numpy(zero_copy_only=False)
            others = others.set_column(
                others.column_names.index(_HIT), _HIT, pa.array(old | theirs)
            )
            kept.clear()
            for s, t in entries:
                if s == side:
                    kept.add((s, t))
            kept.add((1 - side, others))
        rows = rows.set_column(rows.column_names.index(_HIT), _HIT, pa.array(mine))
        other_unique = self._unique == ("left" if side == RIGHT else "right")
        if other_unique and mine.any():  # found its one partner: it is done
            yield from self._tally.settled(side, rows.filter(pa.array(mine)), mine[mine], False, "")
            rows = rows.filter(pa.array(~mine))
        return rows

    def _arm(self, flush: Any, armed: Any, at: int) -> None:
        current = armed.read()
        if current is None or at < current:
            flush.set(Timestamp(micros=at))
            armed.write(at)

    @on_timer(FLUSH)
    def on_flush(
        self,
        fired=beam.DoFn.TimestampParam,
        kept=beam.DoFn.StateParam(ROWS_STATE),  # noqa: B008
        closed=beam.DoFn.StateParam(CLOSED),  # noqa: B008
        armed=beam.DoFn.StateParam(ARMED),  # noqa: B008
        flush=beam.DoFn.TimerParam(FLUSH),  # noqa: B008
    ):
        now = fired.micros
        before = closed.read()
        closed.write(now)
        armed.clear()
        entries = list(kept.read())
        if not entries:
            return
        sides = [[t for s, t in entries if s == side] for side in (LEFT, RIGHT)]
        tables = [pa.concat_tables(t, promote_options="default") if t else None for t in sides]
        schemas = [t.schema if t is not None else None for t in tables]
        left, right = (
            t if t is not None else _empty_like(self._tally.step, schemas[1 - i], self._joiner, i)
            for i, t in enumerate(tables)
        )
        window = self._joiner.window
        if window.windowed:
            after = -_END_OF_TIME - 1 if before is None else before
            joined = self._joiner.join(left, right, closing_between=(after, now))
            yield from self._tally.joined(joined.rows)
            left = _or_hits(left, joined.left_hit)
            right = _or_hits(right, joined.right_hit)
        elif self._joiner.how == "left":
            expired = left.column(_EXP).to_numpy() <= now
            hits = left.column(_HIT).to_numpy(zero_copy_only=False)
            alone = left.filter(pa.array(expired & ~hits))
            if alone.num_rows:
                joined = self._joiner.join(alone, right.slice(0, 0), how="left")
                yield from self._tally.joined(joined.rows)
        kept.clear()
        earliest = None
        ends_by_side = self._row_ends(left, right)
        for side, table, ends in zip((LEFT, RIGHT), (left, right), ends_by_side, strict=True):
            done = ends <= now
            if done.any():
                hits = table.column(_HIT).to_numpy(zero_copy_only=False)
                yield from self._tally.settled(
                    side,
                    table.filter(pa.array(done)),
                    hits[done],
                    side == LEFT and self._joiner.how == "left",
                    unmatched_reason(self._joiner, side),
                )
            if not done.all():
                rest = table.filter(pa.array(~done))
                kept.add((side, rest))
                sliding = window.windowed and window.closing.kind == "sliding"
                first = int((self._ends(rest, after=now) if sliding else ends[~done]).min())
                earliest = first if earliest is None else min(earliest, first)
        if earliest is not None:
            flush.set(Timestamp(micros=earliest))
            armed.write(earliest)


def _or_hits(table: pa.Table, hit: np.ndarray) -> pa.Table:
    old = table.column(_HIT).to_numpy(zero_copy_only=False)
    return table.set_column(table.column_names.index(_HIT), _HIT, pa.array(old | hit))


_SCHEMAS: dict[tuple[str, int], pa.Schema] = {}
"""(step, side) -> the schema of that side's kept rows, as last seen in this process."""


def _empty_like(
    step: str, other: pa.Schema | None, joiner: Joiner, side: int, *, learned: bool = True
) -> pa.Table:
    """An empty table for a side this key never saw, so a left join's unmatched rows still
    get that side's columns: its schema as seen by this process for other keys (``learned``:
    the streaming path; in the bounded one every partition sees every batch, so a side no
    partition saw had no batch, and another pipeline's step of the same name must not lend
    its schema), else the fields the spec lists (null-typed) and the other side's internal
    columns."""
    seen = _SCHEMAS.get((step, side)) if learned else None
    if seen is not None:
        return seen.empty_table()
    columns: dict[str, pa.Array] = {}
    for name in (joiner.left, joiner.right)[side].fields or ():
        columns[name] = pa.array([], pa.null())
    for name in other.names if other is not None else ():
        if name.startswith(_INTERNAL):
            columns[name] = pa.array([], other.field(name).type)
    return pa.table(columns)


# --------------------------------------------------------------------------- the step


class JoinOutputs(NamedTuple):
    """What :class:`Join` returns: joined tables and dead letters (consume both)."""

    rows: beam.PCollection
    dead_letters: beam.PCollection


class Join(beam.PTransform):
    """Join two PCollections of Arrow tables on key fields, per window.

    Applied to a dict ``{"left": pcoll, "right": pcoll}``. Bounded inputs are hash-partitioned
    and joined per partition; unbounded ones (or any in a streaming pipeline) are joined in
    keyed state with event-time timers (see the module docstring).

    Args:
        left, right: the two sides (:class:`JoinSide`).
        how: ``inner`` or ``left``.
        window_fn: ``FixedWindows``, ``SlidingWindows``, ``Sessions`` or ``GlobalWindows``.
        where: an expression over the joined row's columns; only pairs where it is true.
        unique: ``left``/``right``: that side has at most one row per key, so (streaming,
            global window) a row of the other side that met it is done and not kept.
        allowed_lateness: seconds after a window's end during which its rows still arrive.
        on_unmatched: ``drop`` (count as filtered) or ``reject`` (dead letters, rule
            ``unmatched``) for rows that joined nothing (a left join's left rows excepted).
        partitions: bounded path: how many partitions the rows are hashed into.
    """

    def __init__(
        self,
        *,
        left: JoinSide,
        right: JoinSide,
        how: str = "inner",
        window_fn: WindowFn | None = None,
        where: str | None = None,
        unique: str | None = None,
        allowed_lateness: float = 0.0,
        on_unmatched: str = "drop",
        step_name: str = "join",
        run_id: str = "",
        partitions: int = 32,
    ) -> None:
        super().__init__(label=step_name)
        if how not in ("inner", "left"):
            raise ValueError(f"how '{how}' is not inner or left")
        if len(left.keys) != len(right.keys) or not left.keys:
            raise ValueError(
                f"both sides need the same number of key fields (left {list(left.keys)}, "
                f"right {list(right.keys)})"
            )
        if on_unmatched not in ("drop", "reject"):
            raise ValueError(f"on_unmatched '{on_unmatched}' is not drop or reject")
        window_fn = window_fn or GlobalWindows()
        self._joiner = Joiner(left, right, how, JoinWindow.of(window_fn, allowed_lateness), where)
        self._unique = unique
        self._step = step_name
        self._partitions = partitions
        preps = (
            SidePrep(left, step=step_name, run_id=run_id),
            SidePrep(right, step=step_name, run_id=run_id),
        )
        self._tally = _Tally(step_name, on_unmatched, preps)
        if isinstance(window_fn, Sessions) and unique:
            raise ValueError("'unique' applies to the global window only")

    def expand(self, inputs: dict[str, beam.PCollection]) -> JoinOutputs:
        left, right = inputs["left"], inputs["right"]
        streaming = is_streaming(left) or is_streaming(right)
        n_keys = len(self._joiner.left.keys)
        parts: list[beam.PCollection] = []
        letters: list[beam.PCollection] = []
        for side, name, pcoll in ((LEFT, "Left", left), (RIGHT, "Right", right)):
            prep = self._tally.preps[side]
            fn: beam.DoFn = (
                _KeyFn(side, prep, n_keys, self._tally)
                if streaming
                else _PartitionFn(side, prep, n_keys, self._partitions, self._tally)
            )
            if streaming:
                pcoll = pcoll | f"{name}/Global" >> beam.WindowInto(GlobalWindows())
            # typed, so Beam encodes tables with the Arrow coder (not pickle) and keys
            # deterministically (state keys: tuples of text)
            key = beam.typehints.Tuple[str, ...] if streaming else int
            typed = labelled_pardo(f"{name}/Keys", fn).with_output_types(
                beam.typehints.Tuple[key, beam.typehints.Tuple[int, pa.Table]]
            )
            split = pcoll | typed.with_outputs(DEAD_LETTERS, main=ROWS)
            split[DEAD_LETTERS].element_type = pa.Table
            parts.append(split[ROWS])
            letters.append(split[DEAD_LETTERS])
        both = tuple(parts) | "Both" >> beam.Flatten()
        if streaming:
            joiner: beam.DoFn = _StreamJoinFn(self._joiner, self._unique, self._tally)
            joined = both | labelled_pardo("Join", joiner).with_outputs(DEAD_LETTERS, main=ROWS)
        else:
            joined = (
                both
                | "Partitions" >> beam.GroupByKey()
                | labelled_pardo("Join", _JoinPartitionFn(self._joiner, self._tally)).with_outputs(
                    DEAD_LETTERS, main=ROWS
                )
            )
        rows = joined[ROWS]
        rows.element_type = pa.Table
        joined[DEAD_LETTERS].element_type = pa.Table
        letters.append(joined[DEAD_LETTERS])
        dead = tuple(letters) | "DeadLetters" >> beam.Flatten()
        dead.element_type = pa.Table
        return JoinOutputs(rows, dead)
