"""The ``window`` step (and the ``top`` step, the same machinery with another
:class:`~transforms.window_aggregate.Aggregation`): event-time windows, triggers and
aggregates over Arrow batches, with late rows routed to the dead letters instead of vanishing.

Shape of the step::

    Arrow batches ──▶ (streaming: lateness gate) ──▶ rows and their event times
        ──▶ per batch: one partial aggregate per key and window (Arrow group_by), an element
            carrying its window and stamped with its earliest event time
        ──▶ WindowInto(PresetWindows, trigger, accumulation) ──▶ CombinePerKey(MergePartials)
            (batch, one pane per window: CombinePerKey, or sessions merged per key, without
            Beam's windowing: see Window._batch_panes; the top step instead ranks each hash
            partition of keys in Arrow after one GroupByKey: Window._arrow_panes)
        ──▶ one Arrow row per key, window and pane ──▶ Arrow tables:
              batch: one per bundle, in the global window (as a report's);
              streaming: one per bundle, window and pane, left in that window and pane
    late rows, rows without a usable event time ──▶ dead letters

Why partials. Beam windows, groups and triggers element by element; with one element per row
that held the step to a tenth of the speed of reading and validating the rows. Each batch is
therefore pre-aggregated per key and window first (combiner lifting, see
:mod:`transforms.window_aggregate`), and Beam sees a few elements per batch. Their windows are
computed with the rows' (:meth:`Closing.windows`, Beam's own assignment) and kept by
:class:`PresetWindows`, never re-derived from an element's timestamp. Triggers see partials
instead of rows, which changes nothing for watermark, processing-time and ``AfterCount(1)``
triggers; a trigger that counts more than one element means rows, so in streaming the step
then feeds Beam one partial per row (:func:`counts_elements`), at the old per-row speed. In
batch it does not need to (see :func:`batch_trigger`).

Why the windows stay in streaming. The tables a streaming step emits are in the event-time
window and pane that produced them, timestamped at the window's end, so a downstream
GroupByKey (a windowed file sink, a report) groups them per window and fires per pane. Their
WindowFn is ``KeepWindows``: Sessions would merge the overlapping sessions of different keys
downstream. In batch they are put in the global window, as before.

Why a gate. Beam's GroupByKey drops a row silently when it arrives after the watermark has
passed its window's end plus the allowed lateness, and also drops every row of a window whose
trigger has *finished*. Nothing in Beam Python reports either, and a DoFn cannot read its input
watermark (``WatermarkEstimatorParam`` exists only for splittable DoFns, and it is the output
estimator, not the input watermark). The only thing a DoFn learns about the watermark is that an
event-time timer fired: a timer set for ``T`` fires once the input watermark has reached ``T``.

So the gate is a stateful DoFn in the global window (a global window never expires, so no
runner drops rows before the gate sees them), keyed by a small number of shards (any batch can
go to any shard: the watermark is the same for all of them). Each shard runs an event-time
*ticker* on the grid of instants at which windows close (``window end + allowed lateness``:
every ``size`` for fixed windows, every ``period`` for sliding ones; sessions close at arbitrary
instants, so their grid is ``session_resolution``). The last instant the ticker fired at, ``F``,
is a lower bound of the watermark, and on that grid an exact one for window closing: a row
whose (latest) window closes at ``C <= F`` arrived after its window closed, so it goes to the
dead letters with reason ``late`` and a message saying which window, the allowed lateness, and
how far past the window end the watermark was. Everything else is passed on, counted as
aggregated, and reaches the GroupByKey. The ticker walks one grid step per firing while rows
arrive; when no row arrives for ``_EXACT_IDLE_TICKS`` steps it doubles its step, so an idle
stream costs few timers and the end of a bounded stream (watermark to +inf) terminates; an
end-of-time timer stops it at once where the runner delivers due timers together.

Which window decides. A session row is judged by its own session ``[t, t + gap)`` before
merging, as Beam's GroupByKey judges a row (the GroupByKey now sees the row's proto-session,
which ends no earlier, so it keeps what the gate let through). A sliding row belongs to
several windows and is late only when the last of them has closed: a row still in time for a
later window is aggregated, and its earlier, closed windows take it in a LATE pane while they
are within ``grace`` (Beam alone would leave it out of those), so no window misses a row that
arrived in time for it.

Why a grace period. ``F`` can trail the real watermark: before a shard's ticker first fires
(its first batches pass unjudged), right after a long idle spell (the ticker backed off), or
while a row travels from the gate to the GroupByKey as the watermark moves on. The gate's
verdict is what the counts say, so the GroupByKey must not drop what the gate let through: it
runs with ``allowed lateness + grace``, and a row that slipped past the gate within ``grace``
is aggregated into a LATE pane rather than lost. On runners that honour timer output
timestamps (the FnApiRunner, Prism, Flink, Dataflow: the Python SDK holds an event-time timer's
output at its firing time), the pending tick also holds the gate's output watermark, so the
GroupByKey's watermark cannot pass the next closing instant before the gate has seen it; the
legacy BundleBasedDirectRunner has no such holds. For the same reason the step never runs a
trigger that can finish or strand rows (see :func:`never_finishing`).

Counts reconcile per step: ``rows_in = rows_out (aggregated) + rows_dead_lettered``, with
``rule/late``, ``rule/event_time`` and ``rule/missing_field`` counters for the reasons and
``aggregates_out`` for the aggregate rows emitted. In batch (bounded input, not streaming) no
row can be late, so the gate is left out; it is also left out for the global window, which
never closes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import FastPrimitivesCoder, coders
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import (
    FixedWindows,
    GlobalWindow,
    GlobalWindows,
    IntervalWindow,
    Sessions,
    SlidingWindows,
    TimestampedValue,
    WindowFn,
)
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_OUT, TALLY, NodeCounters, rule_counter
from connectors.names import labelled_pardo
from connectors.panes import KeepWindows, is_streaming
from connectors.records import dead_letters_for_rows
from transforms.partitions import by_partition, partition_of
from transforms.step import DEAD_LETTERS, ROWS
from transforms.window_aggregate import (
    AGGREGATES_OUT,
    WINDOW_END,
    WINDOW_START,
    Aggregation,
    ConcatPanes,
    FormatPanes,
    MetricAggregation,
    PaneResults,
    with_front,
)

LATE, EVENT_TIME, MISSING_FIELD = "late", "event_time", "missing_field"
"""Dead-letter rules of the window step (also counted as ``<step>/rule/<rule>``); an
:class:`~transforms.window_aggregate.Aggregation` may add its own (the top step: ``value``)."""

ACCUMULATION = {
    "discarding": tr.AccumulationMode.DISCARDING,
    "accumulating": tr.AccumulationMode.ACCUMULATING,
}

_EXACT_IDLE_TICKS = 32  # grid steps the ticker walks with no rows before it backs off
_END_OF_TIME = GlobalWindow().max_timestamp().micros


# --------------------------------------------------------------------------- configuration


def window_fn(
    kind: str,
    *,
    size: float | None = None,
    period: float | None = None,
    gap: float | None = None,
    offset: float = 0.0,
) -> WindowFn:
    """A Beam WindowFn from plain values in seconds (what a spec's ``window`` block holds).

    ``kind`` is ``fixed`` (size, offset), ``sliding`` (size, period, offset), ``session``
    (gap), ``global``, or ``input``: the windows the rows already carry in their
    ``window_start``/``window_end`` columns (:class:`InputWindows`).
    """

    def positive(name: str, value: float | None) -> float:
        if value is None or value <= 0:
            raise ValueError(f"{kind} windows need a positive '{name}' (seconds)")
        return value

    if kind == "fixed":
        return FixedWindows(positive("size", size), offset)
    if kind == "sliding":
        return SlidingWindows(positive("size", size), positive("period", period), offset)
    if kind == "session":
        return Sessions(positive("gap", gap))
    if kind == "global":
        return GlobalWindows()
    if kind == "input":
        return InputWindows()
    raise ValueError(f"window kind '{kind}' is not one of fixed, sliding, session, global, input")


def processing_time_panes(size: float) -> tuple[WindowFn, tr.TriggerFn]:
    """Processing-time windows of ``size`` seconds, the way Beam expresses them: the global
    window with ``Repeatedly(AfterProcessingTime(size))`` (Nexmark q12's windowing).

    Beam has no processing-time WindowFn: a pane fires ``size`` seconds (of the runner's
    processing-time clock) after the first row that arrived since the previous pane, holding
    the rows that arrived in between; panes are therefore not aligned to the clock. On bounded
    input (batch) no processing-time timer fires before the input ends, so there is one pane
    with every row, as Beam's own q12 gives in batch.
    """
    if size <= 0 or not float(size).is_integer():
        # Beam's trigger protocol (what Flink and Dataflow receive) carries whole seconds
        raise ValueError(f"processing-time windows need a size of whole seconds > 0, not {size:g}")
    return GlobalWindows(), tr.Repeatedly(tr.AfterProcessingTime(int(size)))


def trigger_from_config(config: Mapping[str, Any] | None) -> tr.TriggerFn:
    """A Beam trigger from plain data (what a spec's ``trigger`` block holds).

    Forms: ``None`` or ``{type: default}``; ``{type: watermark, early: T?, late: T?}``;
    ``{type: processing_time, delay: seconds}``; ``{type: count, count: n}``;
    ``{type: repeatedly, trigger: T}``, where ``T`` is again one of these.
    """
    if config is None:
        return tr.DefaultTrigger()
    kind = config.get("type")

    def need(name: str) -> Any:
        if name not in config:
            raise ValueError(f"trigger type '{kind}' needs '{name}'")
        return config[name]

    if kind == "default":
        return tr.DefaultTrigger()
    if kind == "watermark":
        early, late = config.get("early"), config.get("late")
        return tr.AfterWatermark(
            early=None if early is None else trigger_from_config(early),
            late=None if late is None else trigger_from_config(late),
        )
    if kind == "processing_time":
        delay = float(need("delay"))
        if not delay.is_integer() or delay < 0:
            # Beam's trigger protocol (what Flink and Dataflow receive) carries whole seconds
            raise ValueError(f"processing_time delay must be whole seconds >= 0, not {delay:g}")
        return tr.AfterProcessingTime(delay=int(delay))
    if kind == "count":
        return tr.AfterCount(int(need("count")))
    if kind == "repeatedly":
        return tr.Repeatedly(trigger_from_config(need("trigger")))
    raise ValueError(
        f"trigger type '{kind}' is not one of default, watermark, processing_time, count, "
        "repeatedly"
    )


def never_finishing(trigger: tr.TriggerFn) -> tr.TriggerFn:
    """The trigger the step runs for ``trigger``: one that never finishes and always flushes.

    Once a trigger finishes, Beam's GroupByKey drops every later row of that window without a
    trace, so:

    * ``AfterWatermark`` without late firings (it finishes at its on-time pane) gets
      ``late=AfterCount(1)``: each row that arrives within the allowed lateness updates the
      result in a LATE pane.
    * ``Repeatedly(T)`` never finishes, but rows that have not yet satisfied ``T`` when the
      window ends would never be emitted (Java runners flush them when the window expires;
      Python's reference runner stalls on them). It becomes ``Repeatedly(AfterAny(T,
      AfterWatermark()))``: a last pane fires at the end of the window.
    * A bare ``AfterCount``, ``AfterProcessingTime`` or composite fires and finishes: refused.
    """
    if isinstance(trigger, tr.DefaultTrigger):
        return trigger
    if isinstance(trigger, tr.AfterWatermark):
        if trigger.late is None:
            return tr.AfterWatermark(early=trigger.early, late=tr.AfterCount(1))
        return trigger
    if isinstance(trigger, tr.Repeatedly):
        inner = trigger.underlying
        if isinstance(inner, (tr.AfterWatermark, tr.DefaultTrigger)):
            return trigger
        return tr.Repeatedly(tr.AfterAny(inner, tr.AfterWatermark()))
    raise ValueError(
        f"trigger {trigger} fires once and then finishes, after which Beam drops the window's "
        "later rows silently; wrap it in Repeatedly(...) or use AfterWatermark(early=..., late=...)"
    )


def batch_trigger(trigger: tr.TriggerFn) -> tr.TriggerFn:
    """``trigger`` for a bounded (batch) run: ``AfterProcessingTime`` and ``AfterCount(n > 1)``
    never fire; every other part is kept.

    Beam's batch trigger driver hands a trigger each key's elements at once and then ends the
    window, so in batch a window is decided with all its rows:

    * No processing time passes between reading the input and the end of it, so a
      processing-time trigger cannot fire before the window's pane at the end. Beam's batch
      FnApiRunner cannot run one at all (its batch trigger driver has no clock:
      ``AttributeError: 'NoneType' object has no attribute 'time'``, which is also why Beam's
      own Nexmark q12 fails in batch), so the step says what it means there instead.
    * A count of more than one either fires with every row of the window or not at all, and
      the window's result is the same (discarding: the pane after an early one is empty).
      Only Beam's label would differ (EARLY once the window has ``n`` rows); knowing it would
      cost one Beam element per row (:func:`counts_elements`), which is what made such a
      window step slower than Beam's own per-element pipeline. So in batch the step feeds
      partials and each window's one pane is ON_TIME (in accumulating mode Beam would repeat
      the rows in a second pane; the step gives them once).

    Streaming runs keep the trigger as given, and count rows exactly.
    """
    if isinstance(trigger, tr.AfterProcessingTime) or (
        isinstance(trigger, tr.AfterCount) and trigger.count > 1
    ):
        return tr._Never()  # Beam's own "never fires" (translated as Trigger.Never)
    if isinstance(trigger, tr.AfterWatermark):
        early, late = (
            None if part is None else batch_trigger(part.underlying)
            for part in (trigger.early, trigger.late)
        )
        return tr.AfterWatermark(
            early=None if isinstance(early, tr._Never) else early,
            late=None if isinstance(late, tr._Never) else late,
        )
    if isinstance(trigger, tr.Repeatedly):
        return tr.Repeatedly(batch_trigger(trigger.underlying))
    if isinstance(trigger, (tr.AfterAny, tr.AfterAll)):
        return type(trigger)(*(batch_trigger(t) for t in trigger.triggers))
    if isinstance(trigger, tr.AfterEach):
        return tr.AfterEach(*(batch_trigger(t) for t in trigger.triggers))
    return trigger


# --------------------------------------------------------------------------- event time


def _micros(seconds: float) -> int:
    return round(seconds * 1_000_000)


def _iso(micros: int) -> str:
    moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


_MAX_MILLIS = MAX_TIMESTAMP.micros // 1000
_MIN_MILLIS = MIN_TIMESTAMP.micros // 1000


def event_micros(
    column: pa.ChunkedArray | pa.Array, name: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """Event times of ``column`` in epoch microseconds, which rows have one, and why not.

    Timestamps (any unit; naive ones are read as UTC), dates (midnight UTC) and integers
    (epoch milliseconds) are accepted; anything else gives no row an event time.
    """
    kind = column.type
    if pa.types.is_timestamp(kind):
        micros = pc.cast(column, pa.timestamp("us", tz=kind.tz), safe=False).cast(pa.int64())
    elif pa.types.is_date32(kind):
        micros = pc.multiply(column.cast(pa.int32()).cast(pa.int64()), 86_400_000_000)
    elif pa.types.is_date64(kind):
        micros = pc.multiply(column.cast(pa.int64()), 1000)
    elif pa.types.is_integer(kind):
        millis = column.cast(pa.int64())
        in_range = pc.and_(
            pc.greater_equal(millis, _MIN_MILLIS), pc.less_equal(millis, _MAX_MILLIS)
        )
        micros = pc.multiply(pc.if_else(in_range, millis, pa.scalar(None, pa.int64())), 1000)
    else:
        n = len(column)
        return (
            np.zeros(n, np.int64),
            np.zeros(n, bool),
            f"event time field '{name}' is {kind}; it must be a timestamp, a date or epoch "
            "milliseconds (cast it in a map step first)",
        )
    valid = pc.is_valid(micros).to_numpy(zero_copy_only=False)
    values = pc.fill_null(micros, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return values, valid, f"event time field '{name}' is null or out of range"


# --------------------------------------------------------------------------- window closing


@dataclass(frozen=True)
class Closing:
    """When a row's windows close (``end + allowed lateness``) and the grid the gate ticks on.

    All values are microseconds. For fixed and sliding windows every closing instant lies on
    the grid ``anchor + k * step``, so the gate's view of the watermark is exact at the instants
    that matter; for sessions the grid is ``session_resolution``.
    """

    kind: str  # fixed | sliding | session
    size: int  # window size, or the session gap
    step: int  # grid step: the window period (fixed: size; sliding: period), or the resolution
    offset: int
    lateness: int

    @staticmethod
    def of(window: WindowFn, lateness: int, session_resolution: int) -> Closing:
        if isinstance(window, FixedWindows):
            return Closing(
                "fixed", window.size.micros, window.size.micros, window.offset.micros, lateness
            )
        if isinstance(window, SlidingWindows):
            return Closing(
                "sliding", window.size.micros, window.period.micros, window.offset.micros, lateness
            )
        if isinstance(window, Sessions):
            return Closing("session", window.gap_size.micros, session_resolution, 0, lateness)
        if isinstance(window, InputWindows):
            return Closing("input", 0, session_resolution, 0, lateness)
        raise ValueError(
            f"window {window!r} is not FixedWindows, SlidingWindows, Sessions, InputWindows or "
            "GlobalWindows"
        )

    @property
    def anchor(self) -> int:
        if self.kind == "fixed":
            return self.offset + self.lateness
        if self.kind == "sliding":
            return self.offset + self.size + self.lateness
        return self.lateness

    def latest_window(
        self, micros: np.ndarray, starts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of the last window each event time belongs to (Beam's assignment).

        Input windows: a row's event time is its window's end - 1 µs (its ``max_timestamp``,
        where Beam stamps an aggregate) and ``starts`` its ``window_start``.
        """
        if self.kind == "session":
            return micros, micros + self.size
        if self.kind == "input":
            assert starts is not None
            return starts, micros + 1
        start = micros - np.mod(micros - self.offset, self.step)
        return start, start + self.size

    def windows(
        self, micros: np.ndarray, starts: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every window each event time belongs to, as Beam assigns them: ``(row, start,
        end)``, row by row and, within a row, the latest window first. A session row gets its
        own ``[t, t + gap)``; sessions are merged later. Input windows: the row's own."""
        if self.kind != "sliding":
            start, end = self.latest_window(micros, starts)
            return np.arange(len(micros)), start, end
        latest, _ = self.latest_window(micros)
        rows, starts = [], []
        for k in range(-(-self.size // self.step)):  # windows per row, at most
            start = latest - k * self.step
            inside = np.flatnonzero(start + self.size > micros)
            rows.append(inside)
            starts.append(start[inside])
        order = np.argsort(np.concatenate(rows), kind="stable")
        row, start = np.concatenate(rows)[order], np.concatenate(starts)[order]
        return row, start, start + self.size

    def closes_at(self, micros: np.ndarray) -> np.ndarray:
        if self.kind == "input":
            return micros + 1 + self.lateness
        return self.latest_window(micros)[1] + self.lateness

    def grid_floor(self, micros: int) -> int:
        return micros - (micros - self.anchor) % self.step


@dataclass
class GateClock:
    """What a gate shard knows of the watermark, and where its ticker stands.

    ``watermark`` is the last instant the ticker fired at (``None`` before the first firing:
    then nothing can be judged late), ``armed`` the instant it is set for (``None`` when it is
    not set), ``idle`` the firings in a row with no batch in between, ``seen`` whether a batch
    arrived since the last firing.
    """

    watermark: int | None = None
    armed: int | None = None
    idle: int = 0
    seen: bool = False

    def on_batch(self, closing: Closing, earliest_event: int | None) -> int | None:
        """Note a batch; return the instant to (re)set the ticker for, if it must move."""
        self.seen = True
        if self.watermark is None:
            if self.armed is None and earliest_event is not None:
                self.armed = closing.grid_floor(earliest_event)
                return self.armed
            return None
        next_step = self.watermark + closing.step
        if self.armed is None or self.armed > next_step:  # stopped, or backed off while idle
            self.armed = next_step
            return self.armed
        return None

    def on_tick(self, fired: int, closing: Closing) -> int | None:
        """The ticker fired at ``fired``: the watermark has reached it. Return the next tick."""
        self.watermark = fired
        self.idle = 0 if self.seen else self.idle + 1
        self.seen = False
        backoff = 2 ** max(0, self.idle - _EXACT_IDLE_TICKS + 1)
        following = fired + closing.step * backoff
        self.armed = following if following < _END_OF_TIME else None
        return self.armed


# --------------------------------------------------------------------------- windows


class PresetWindows(WindowFn):
    """Assigns a partial element the window it was computed for, which its value carries.

    ``WindowInto`` with the step's own WindowFn would derive windows from the element's
    timestamp: a sliding window's partial would be counted in every window its timestamp falls
    in, and a session's proto-session would shrink to ``[t, t + gap)``. Sessions keep merging,
    with Sessions' own merge.

    Args:
        session_gap: for sessions, the gap (µs); ``None`` for fixed and sliding windows.
    """

    def __init__(self, session_gap: int | None = None) -> None:
        self._session_gap = session_gap
        self._sessions = None if session_gap is None else Sessions(Duration(micros=session_gap))

    def assign(self, context: WindowFn.AssignContext) -> list[IntervalWindow]:
        start, end, _ = context.element[1]
        return [IntervalWindow(Timestamp(micros=start), Timestamp(micros=end))]

    def merge(self, merge_context: WindowFn.MergeContext) -> None:
        if self._sessions is not None:
            self._sessions.merge(merge_context)

    def is_merging(self) -> bool:
        return self._sessions is not None

    def get_window_coder(self) -> coders.Coder:
        return coders.IntervalWindowCoder()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PresetWindows) and self._session_gap == other._session_gap

    def __hash__(self) -> int:
        return hash((type(self), self._session_gap))


class InputWindows(PresetWindows):
    """The windows rows already carry: ``window_start``/``window_end`` columns written by an
    earlier window (or top) step. A step with these windows aggregates each row in exactly the
    window it came from, e.g. the max of per-auction counts per sliding window (Nexmark q5).

    Re-deriving the window from a timestamp cannot do this for sliding windows: an aggregate
    of ``[0, 10)`` stamped at its end - 1 µs also falls in ``[5, 15)``. Beam's own q5 avoids
    the question by never leaving the window between its two combines; a spec has a step
    boundary there, and the rows' columns carry the window across it. As a WindowFn this is
    :class:`PresetWindows` (not merging: sessions were merged by the earlier step).
    """

    def __init__(self) -> None:
        super().__init__(None)


class _KeepingWindows(beam.ParDo):
    """A ParDo whose output stays in the windows its elements are in (``KeepWindows``, not
    merging: Sessions would merge the sessions of different keys in a downstream GroupByKey),
    with the trigger, lateness and accumulation of its input, which a downstream GroupByKey
    then uses."""

    def get_windowing(self, inputs: Any) -> Windowing:
        windowing = inputs[0].windowing
        return Windowing(
            KeepWindows(),
            windowing.triggerfn,
            windowing.accumulation_mode,
            windowing.timestamp_combiner,
            windowing.allowed_lateness,
        )


def counts_elements(trigger: tr.TriggerFn) -> bool:
    """Whether ``trigger`` fires on a count of more than one element somewhere in it.

    Such a trigger means rows, so the step then feeds Beam one partial per row.
    ``AfterCount(1)`` means "something arrived", true of a partial exactly when of a row.
    """
    if isinstance(trigger, tr.AfterCount):
        return trigger.count > 1
    parts = [getattr(trigger, name, None) for name in ("early", "late", "underlying")]
    parts += getattr(trigger, "triggers", [])
    return any(counts_elements(part) for part in parts if part is not None)


# --------------------------------------------------------------------------- rows


def beam_key(values: Sequence[Any]) -> tuple:
    """A grouping key Beam can encode deterministically (other values by their text)."""
    return tuple(
        v if v is None or isinstance(v, (bool, int, float, str, bytes)) else str(v) for v in values
    )


class RowSplitter:
    """Finds the rows of a batch that can be windowed, and their event times.

    Rows missing a needed field or a usable event time become dead letters here, and so do
    rows the aggregation cannot rank or aggregate (its ``prepare``), and late rows once the
    gate has judged them (:meth:`late_letters`).

    With ``input_windows`` a row's window is the one its ``window_start``/``window_end``
    columns hold (the output of an earlier window step), and its event time is that window's
    end - 1 µs: where Beam stamps an aggregate (``END_OF_WINDOW``), so a row is late exactly
    when the window it came from has closed.
    """

    def __init__(
        self,
        *,
        key_fields: Sequence[str],
        metric_fields: Sequence[str],
        event_time_field: str | None,
        step: str,
        run_id: str,
        input_windows: bool = False,
        aggregation: Aggregation | None = None,
    ) -> None:
        windows = [WINDOW_START, WINDOW_END] if input_windows else []
        self._fields = list(dict.fromkeys([*key_fields, *metric_fields, *windows]))
        self._event_time_field = WINDOW_END if input_windows else event_time_field
        self._input_windows = input_windows
        self._aggregation = aggregation
        self._step = step
        self._run_id = run_id

    def _letters(self, rows: pa.Table, errors: Sequence[str], rule: str) -> pa.Table:
        return dead_letters_for_rows(
            rows, errors=errors, rules=[rule] * rows.num_rows, step=self._step, run_id=self._run_id
        )

    def split(
        self, table: pa.Table, element_timestamp: Timestamp
    ) -> tuple[pa.Table, np.ndarray, list[pa.Table]]:
        """Rows that can be windowed, their event times (µs), and dead letters for the rest."""
        n = table.num_rows
        needed = [*self._fields, *([self._event_time_field] if self._event_time_field else [])]
        missing = [f for f in dict.fromkeys(needed) if f not in table.column_names]
        if missing:
            error = f"field(s) {', '.join(missing)} missing from this batch"
            return (
                table.slice(0, 0),
                np.zeros(0, np.int64),
                [self._letters(table, [error] * n, MISSING_FIELD)],
            )
        letters: list[pa.Table] = []
        if self._event_time_field is None:
            micros = np.full(n, element_timestamp.micros, np.int64)
        else:
            micros, valid, problem = event_micros(
                table.column(self._event_time_field), self._event_time_field
            )
            if self._input_windows:
                micros -= 1
                starts, valid_start, _ = event_micros(table.column(WINDOW_START), WINDOW_START)
                valid &= valid_start
                problem = "window_start or window_end is null or not a timestamp"
            table, micros = self._keep(table, micros, valid, problem, EVENT_TIME, letters)
        if self._aggregation is not None and table.num_rows:
            table, bad, problem, rule = self._aggregation.prepare(table)
            if bad is not None:
                table, micros = self._keep(table, micros, ~bad, problem, rule, letters)
        return table, micros, letters

    def _keep(
        self,
        table: pa.Table,
        micros: np.ndarray,
        valid: np.ndarray,
        problem: str,
        rule: str,
        letters: list[pa.Table],
    ) -> tuple[pa.Table, np.ndarray]:
        """The ``valid`` rows and their event times; the others become dead letters."""
        if valid.all():
            return table, micros
        bad = table.filter(pa.array(~valid)).drop_columns(
            [c for c in table.column_names if c.startswith("__bw_")]
        )
        letters.append(self._letters(bad, [problem] * bad.num_rows, rule))
        return table.filter(pa.array(valid)), micros[valid]

    def starts(self, rows: pa.Table) -> np.ndarray | None:
        """Input windows: each row's window start (µs); otherwise ``None`` (the closing rule
        derives windows from event times)."""
        if not self._input_windows:
            return None
        if not rows.num_rows:  # also when the batch lacked the window columns
            return np.zeros(0, np.int64)
        return event_micros(rows.column(WINDOW_START), WINDOW_START)[0]

    def late_letters(
        self, rows: pa.Table, micros: np.ndarray, closing: Closing, watermark: int
    ) -> pa.Table:
        """Dead letters for rows whose window had closed, saying by how much."""
        starts, ends = closing.latest_window(micros, self.starts(rows))
        seconds = closing.lateness / 1e6
        errors = [
            f"late: window [{_iso(int(s))}, {_iso(int(e))}) closed at {_iso(int(e) + closing.lateness)} "
            f"(allowed lateness {seconds:g}s) and the watermark had reached {_iso(watermark)}, "
            f"{(watermark - int(e)) / 1e6:g}s after the window end"
            for s, e in zip(starts, ends, strict=True)
        ]
        rows = rows.drop_columns([c for c in rows.column_names if c.startswith("__bw_")])
        return self._letters(rows, errors, LATE)


class _Emitter:
    """Counts a batch's fate and yields its outputs: partial elements and dead letters.

    A partial element is ``TimestampedValue((key, (window start, window end, partial)), t)``:
    the Beam key of its key values, the window it was computed for (µs; ``None`` in the
    global window), and ``t``, the earliest event time of its rows (inside its window).

    For fixed and sliding windows the Beam key ends with the window bounds too. Beam keeps
    state and fires triggers per key and window anyway, so nothing changes but the cost:
    Beam's in-memory trigger driver looks at every window of a key on each timer, quadratic in
    the windows per key: 400k rows in 2,000 one-minute windows per key took 46 s with the key
    alone and 14 s with the window in it (FnApiRunner; at the benchmark's 168 windows per key
    the difference is ~5%). Sessions cannot: their windows merge, only within a key.
    """

    def __init__(self, partials: Any, closing: Closing | None, step: str) -> None:
        self._partials = partials
        self._closing = closing
        self._window_in_key = closing is not None and closing.kind != "session"
        self._step = step
        self._counters: NodeCounters | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._step)

    def emit(
        self,
        rows_in: int,
        rows: pa.Table,
        micros: np.ndarray,
        letters: list[pa.Table],
        starts: np.ndarray | None = None,
    ) -> Iterator[Any]:
        yield from self.count(rows_in, rows, letters)
        windows = None if self._closing is None else self._closing.windows(micros, starts)
        for p in self._partials.partials(rows, micros, windows):
            key = beam_key(p.partial[0])
            if self._window_in_key:
                key += (p.start, p.end)
            yield TimestampedValue((key, (p.start, p.end, p.partial)), Timestamp(micros=p.earliest))

    def count(self, rows_in: int, rows: pa.Table, letters: list[pa.Table]) -> Iterator[Any]:
        """Count a batch's rows (in, aggregated, dead) and yield its dead letters."""
        counters = self._counters
        assert counters is not None
        counters.inc(ROWS_IN, rows_in)
        counters.inc(ROWS_OUT, rows.num_rows)
        TALLY.add(self._step, rows_in)
        for table in letters:
            counters.inc(ROWS_DEAD, table.num_rows)
            counters.inc(rule_counter(table.column("rule")[0].as_py()), table.num_rows)
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, table)

    def candidates(
        self,
        rows_in: int,
        rows: pa.Table,
        micros: np.ndarray,
        letters: list[pa.Table],
        starts: np.ndarray | None,
        partitions: int,
    ) -> Iterator[Any]:
        """The batch's candidate rows (see :meth:`Window._arrow_panes`), one table per
        partition of their keys, and its dead letters."""
        yield from self.count(rows_in, rows, letters)
        if not rows.num_rows:
            return
        windows = None if self._closing is None else self._closing.windows(micros, starts)
        table = self._partials.candidates(rows, micros, windows)
        keys = self._partials.key_fields
        yield from by_partition(table, partition_of(table, keys, partitions), partitions)


# The DoFn methods below carry no annotations on purpose: Beam reads them as type hints.


class _PartialsFn(beam.DoFn):
    """Batch (or global-window) path: nothing can be late, so no gate."""

    def __init__(self, splitter: RowSplitter, emitter: _Emitter) -> None:
        self._emitter = emitter
        self._splitter = splitter

    def setup(self) -> None:
        self._emitter.setup()

    def process(self, table, timestamp=beam.DoFn.TimestampParam):
        rows, micros, letters = self._splitter.split(table, timestamp)
        starts = self._splitter.starts(rows)
        yield from self._emitter.emit(table.num_rows, rows, micros, letters, starts)


class _CandidatesFn(_PartialsFn):
    """Batch, one pane per window, ranked in Arrow: a batch's candidate rows by partition."""

    def __init__(self, splitter: RowSplitter, emitter: _Emitter, partitions: int) -> None:
        super().__init__(splitter, emitter)
        self._partitions = partitions

    def process(self, table, timestamp=beam.DoFn.TimestampParam):
        rows, micros, letters = self._splitter.split(table, timestamp)
        starts = self._splitter.starts(rows)
        yield from self._emitter.candidates(
            table.num_rows, rows, micros, letters, starts, self._partitions
        )


class _RankedPanesFn(PaneResults):
    """Batch, one pane per window, ranked in Arrow: one partition's candidates from every
    batch -> the rows that stay per key and window, one ON_TIME pane each, as one table."""

    def __init__(self, aggregation: Aggregation, session_gap: int | None, step: str) -> None:
        super().__init__(step)
        self._aggregation = aggregation
        self._session_gap = session_gap

    def process(self, element):
        _, tables = element
        union = pa.concat_tables(list(tables), promote_options="permissive")
        rows, starts, ends = self._aggregation.ranked_windows(union, self._session_gap, self._step)
        if not rows.num_rows:
            return
        assert self._counters is not None
        self._counters.inc(AGGREGATES_OUT, rows.num_rows)
        n = rows.num_rows
        yield with_front(
            rows,
            pa.nulls(n, pa.int64()) if starts is None else pa.array(starts, pa.int64()),
            pa.nulls(n, pa.int64()) if ends is None else pa.array(ends, pa.int64()),
            pa.array(["ON_TIME"] * n, pa.string()),
            pa.array(np.zeros(n, np.int64)),
        )


class _MergeSessionsFn(PaneResults):
    """Batch sessions: a key's proto-sessions merged here, in start order, into sessions.

    In batch a session window with a trigger that fires only at the end gives one ON_TIME pane
    per session, so Beam's merging trigger driver (which re-sorts and compares every window of a
    key in Python ``Timestamp`` objects, and dominated the step: 58 of 94 profiled seconds for
    200,000 bids in 2,000 bidders' sessions) is not needed: the same merge as ``Sessions``
    (windows that overlap join; ``[a, b)`` and ``[b, c)`` do not) runs on plain integers.
    """

    def __init__(self, combine: beam.CombineFn, step: str) -> None:
        super().__init__(step)
        self._combine = combine

    def process(self, element):
        _, values = element
        combine, session, start, end = self._combine, None, 0, 0
        for value in sorted(values, key=lambda v: (v[0], v[1])):
            if session is not None and value[0] >= end:
                yield from self.pane(start, end, "ON_TIME", 0, combine.extract_output(session))
                session = None
            if session is None:
                session, start, end = combine.create_accumulator(), value[0], value[1]
            session = combine.add_input(session, value)
            end = max(end, value[1])
        if session is not None:
            yield from self.pane(start, end, "ON_TIME", 0, combine.extract_output(session))


class _WindowInKeyFn(PaneResults):
    """Batch fixed, sliding and input windows: ``(key + (start, end), table)`` -> its pane,
    the window read from the key."""

    def process(self, element):
        key, table = element
        yield from self.pane(key[-2], key[-1], "ON_TIME", 0, table)


class _ShardFn(beam.DoFn):
    """Spread batches over the gate's shards, round robin."""

    def __init__(self, shards: int) -> None:
        self._shards = shards
        self._next = 0

    def process(self, table):
        self._next = (self._next + 1) % self._shards
        yield self._next, table


class _LatenessGateFn(beam.DoFn):
    """Streaming path: dead-letter rows whose window had closed before they arrived.

    See the module docstring for why this is a ticker on the window-closing grid.
    """

    TICK = TimerSpec("tick", TimeDomain.WATERMARK)
    END = TimerSpec("end", TimeDomain.WATERMARK)
    CLOCK = ReadModifyWriteStateSpec("clock", FastPrimitivesCoder())

    def __init__(self, splitter: RowSplitter, closing: Closing, emitter: _Emitter) -> None:
        self._splitter = splitter
        self._closing = closing
        self._emitter = emitter

    def setup(self) -> None:
        self._emitter.setup()

    def process(
        self,
        element,
        timestamp=beam.DoFn.TimestampParam,
        clock=beam.DoFn.StateParam(CLOCK),  # noqa: B008
        tick=beam.DoFn.TimerParam(TICK),  # noqa: B008
        end=beam.DoFn.TimerParam(END),  # noqa: B008
    ):
        _, table = element
        saved = clock.read()
        if saved is None:  # this shard's first batch
            end.set(GlobalWindow().max_timestamp())
        gate = GateClock(*(saved or ()))
        rows, micros, letters = self._splitter.split(table, timestamp)
        if gate.watermark is not None and rows.num_rows:
            late = self._closing.closes_at(micros) <= gate.watermark
            if late.any():
                letters.append(
                    self._splitter.late_letters(
                        rows.filter(pa.array(late)), micros[late], self._closing, gate.watermark
                    )
                )
                rows, micros = rows.filter(pa.array(~late)), micros[~late]
        earliest = int(micros.min()) if len(micros) else None
        self._arm(tick, gate.on_batch(self._closing, earliest))
        clock.write((gate.watermark, gate.armed, gate.idle, gate.seen))
        starts = self._splitter.starts(rows)
        yield from self._emitter.emit(table.num_rows, rows, micros, letters, starts)

    @on_timer(TICK)
    def on_tick(
        self,
        fired=beam.DoFn.TimestampParam,
        clock=beam.DoFn.StateParam(CLOCK),  # noqa: B008
        tick=beam.DoFn.TimerParam(TICK),  # noqa: B008
    ):
        gate = GateClock(*(clock.read() or ()))
        self._arm(tick, gate.on_tick(fired.micros, self._closing))
        clock.write((gate.watermark, gate.armed, gate.idle, gate.seen))

    @on_timer(END)
    def on_end(
        self,
        clock=beam.DoFn.StateParam(CLOCK),  # noqa: B008
        tick=beam.DoFn.TimerParam(TICK),  # noqa: B008
    ):
        """The input is complete (watermark at the end of time): stop the ticker at once.

        Runners that deliver all due timers together stop here after one more tick; the
        ticker's back-off guarantees termination on runners that do not.
        """
        gate = GateClock(*(clock.read() or ()))
        gate.armed = None
        tick.clear()
        clock.write((gate.watermark, gate.armed, gate.idle, gate.seen))

    @staticmethod
    def _arm(tick: Any, at: int | None) -> None:
        if at is not None:
            tick.set(Timestamp(micros=at))


# --------------------------------------------------------------------------- the step


class WindowOutputs(NamedTuple):
    """What :class:`Window` returns: aggregate tables and dead letters (consume both)."""

    rows: beam.PCollection
    dead_letters: beam.PCollection


class Window(beam.PTransform):
    """Window Arrow batches by event time and aggregate each key per window and pane.

    Returns :class:`WindowOutputs`: ``rows`` holds Arrow tables with ``window_start``,
    ``window_end`` (UTC timestamps; null for the global window), ``pane_timing`` (EARLY,
    ON_TIME, LATE), ``pane_index``, the key fields and the metrics; ``dead_letters`` holds
    late rows (rule ``late``) and rows without a usable event time or a needed field. In
    batch the tables are in the global window; in streaming (the ``streaming`` option, or
    unbounded input) each table holds one window's pane and stays in that window and pane.

    Args:
        window_fn: ``FixedWindows``, ``SlidingWindows``, ``Sessions``, ``GlobalWindows``, or
            :class:`InputWindows` (the windows an earlier window step put in the rows' columns);
            see :func:`window_fn` to build one from plain values.
        key_fields: fields to group by within each window (none: one group).
        metrics: output column -> ``count`` or ``sum|min|max|mean|count_distinct(field)``.
        aggregation: what to compute per key and window instead of ``metrics`` (the top
            step's :class:`transforms.top.TopRows`); see
            :class:`transforms.window_aggregate.Aggregation`.
        event_time_field: timestamp, date or epoch-millisecond field giving each row's event
            time; ``None`` uses the timestamp of the batch element (e.g. a Kafka timestamp).
        trigger: when panes fire (Beam trigger; default: at the watermark, then once per late
            bundle). Adjusted so it never finishes nor strands rows, see
            :func:`never_finishing`; one-shot triggers are refused.
        allowed_lateness: seconds after a window's end during which rows still update it;
            later rows go to the dead letters with rule ``late``.
        accumulation: ``discarding`` (each pane holds the rows since the previous one) or
            ``accumulating`` (each pane holds every row of the window so far).
        step_name: names counters and the ``step`` of dead letters.
        run_id: written into dead letters.
        grace: seconds the GroupByKey keeps windows beyond ``allowed_lateness``, so that rows
            the gate let through are never dropped there (see the module docstring).
        shards: keys of the lateness gate. More shards spread its work (judging and
            pre-aggregating batches) over workers; each shard learns the watermark on its own,
            from its first batch on, so rows reaching a shard before its first tick pass
            unjudged.
        session_resolution: for sessions, how finely (seconds) the gate follows the watermark.
        partitions: batch, aggregations ranked in Arrow (see :meth:`_arrow_panes`): how many
            partitions the keys are hashed into.
    """

    def __init__(
        self,
        *,
        window_fn: WindowFn,
        key_fields: Sequence[str] = (),
        metrics: Mapping[str, str] | None = None,
        aggregation: Aggregation | None = None,
        event_time_field: str | None = None,
        trigger: tr.TriggerFn | None = None,
        allowed_lateness: float = 0.0,
        accumulation: Literal["discarding", "accumulating"] = "discarding",
        step_name: str = "window",
        run_id: str = "",
        grace: float = 60.0,
        shards: int = 1,
        session_resolution: float = 1.0,
        partitions: int = 32,
    ) -> None:
        super().__init__(label=step_name)
        if accumulation not in ACCUMULATION:
            raise ValueError(f"accumulation '{accumulation}' is not discarding or accumulating")
        if len(set(key_fields)) != len(key_fields):
            raise ValueError(f"key_fields {list(key_fields)} repeat a field")
        if allowed_lateness < 0 or grace < 0 or shards < 1 or session_resolution <= 0:
            raise ValueError(
                "allowed_lateness and grace must be >= 0, shards >= 1, session_resolution > 0"
            )
        if aggregation is not None and metrics is not None:
            raise ValueError("give metrics or an aggregation, not both")
        if aggregation is None:  # parses (validates) the metrics
            aggregation = MetricAggregation(key_fields, metrics or {"rows": "count"})
        if aggregation.key_fields != list(key_fields):
            raise ValueError(
                f"the aggregation groups by {aggregation.key_fields}, not {key_fields}"
            )
        input_windows = isinstance(window_fn, InputWindows)
        if input_windows and event_time_field is not None:
            raise ValueError(
                "input windows take each row's window (and time) from its window_start and "
                "window_end columns; drop event_time"
            )
        self._aggregation = aggregation
        self._closing = (
            None
            if isinstance(window_fn, GlobalWindows)
            else Closing.of(window_fn, _micros(allowed_lateness), _micros(session_resolution))
        )
        session_gap = window_fn.gap_size.micros if isinstance(window_fn, Sessions) else None
        self._assign = GlobalWindows() if self._closing is None else PresetWindows(session_gap)
        self._trigger = never_finishing(trigger or tr.DefaultTrigger())
        self._lateness = Duration(micros=_micros(allowed_lateness + grace))
        self._accumulation = ACCUMULATION[accumulation]
        self._step = step_name
        self._shards = shards
        self._partitions = partitions
        self._splitter = RowSplitter(
            key_fields=key_fields,
            metric_fields=aggregation.fields,
            event_time_field=event_time_field,
            step=step_name,
            run_id=run_id,
            input_windows=input_windows,
            aggregation=aggregation,
        )
        self._emitters = {  # streaming or not: whether a count trigger needs a partial per row
            streaming: _Emitter(
                aggregation.batch_partials(
                    session_gap=session_gap,
                    per_row=streaming and counts_elements(self._trigger),
                    step=step_name,
                ),
                self._closing,
                step_name,
            )
            for streaming in (False, True)
        }

    def _one_pane(self) -> bool:
        """Event-time windows whose trigger, in batch, fires once per window at the end."""
        return self._closing is not None and self._fires_once()

    def _fires_once(self) -> bool:
        """Whether the trigger, in batch, fires once per window at the end."""
        trigger = batch_trigger(self._trigger)
        return isinstance(trigger, tr.DefaultTrigger) or (
            isinstance(trigger, tr.AfterWatermark) and trigger.early is None
        )

    def _batch_panes(self, partials: beam.PCollection) -> beam.PCollection:
        """Batch, one pane per window: the partials combined per key and window without Beam's
        windowing, whose per-element trigger driver cost more than the aggregation itself.

        Fixed, sliding and input windows are already in the Beam key (see :class:`_Emitter`),
        so a plain CombinePerKey (lifted into each bundle) gives each window's result; sessions
        are merged per key by :class:`_MergeSessionsFn`. Each result is one ON_TIME pane, as
        Beam's own windowing gives in batch.
        """
        combine = self._aggregation.combine_fn()
        if self._closing is not None and self._closing.kind == "session":
            panes = (
                partials
                | "Sessions" >> beam.GroupByKey()
                | "MergeSessions" >> beam.ParDo(_MergeSessionsFn(combine, self._step))
            )
        else:
            panes = (
                partials
                | "Aggregate" >> beam.CombinePerKey(combine)
                | "Panes" >> beam.ParDo(_WindowInKeyFn(self._step))
            )
        return panes | "Concat" >> beam.ParDo(ConcatPanes()).with_output_types(pa.Table)

    def _arrow_panes(self, tables: beam.PCollection) -> WindowOutputs:
        """Batch, one pane per window (the global window too), for an aggregation that ranks
        in Arrow (the top step): each batch's candidate rows, hash-partitioned by key, meet their key's candidates from
        every other batch in one GroupByKey over ``partitions`` partition numbers, and each
        partition is ranked per key and window at once (sessions merged there, in numpy).

        The partials path gives the same rows, but as one Beam element per key and window of
        each batch, merged one at a time: with a window per key (Nexmark's auctions, one
        session each) that was ~40% of a run, and the partials' tables were pickled.
        """
        split = tables | labelled_pardo(
            "Candidates", _CandidatesFn(self._splitter, self._emitters[False], self._partitions)
        ).with_output_types(beam.typehints.Tuple[int, pa.Table]).with_outputs(
            DEAD_LETTERS, main=ROWS
        )
        dead_letters = split[DEAD_LETTERS]
        dead_letters.element_type = pa.Table
        closing = self._closing
        gap = closing.size if closing is not None and closing.kind == "session" else None
        ranked = (
            split[ROWS]
            | "Partitions" >> beam.GroupByKey()
            | "Rank" >> beam.ParDo(_RankedPanesFn(self._aggregation, gap, self._step))
        )
        ranked.element_type = pa.Table
        return WindowOutputs(ranked, dead_letters)

    def expand(self, tables: beam.PCollection) -> WindowOutputs:
        streaming = is_streaming(tables)
        if streaming and self._closing is not None:
            split = (
                tables
                | "Global" >> beam.WindowInto(GlobalWindows())
                | "Shard"
                >> beam.ParDo(_ShardFn(self._shards)).with_output_types(
                    beam.typehints.Tuple[int, pa.Table]
                )
                | labelled_pardo(
                    "LatenessGate",
                    _LatenessGateFn(self._splitter, self._closing, self._emitters[True]),
                ).with_outputs(DEAD_LETTERS, main=ROWS)
            )
        elif not streaming and self._fires_once() and self._aggregation.in_arrow:
            return self._arrow_panes(tables)
        else:
            split = tables | labelled_pardo(
                "Partials", _PartialsFn(self._splitter, self._emitters[streaming])
            ).with_outputs(DEAD_LETTERS, main=ROWS)
        dead_letters = split[DEAD_LETTERS]
        dead_letters.element_type = pa.Table
        if not streaming and self._one_pane():
            return WindowOutputs(self._batch_panes(split[ROWS]), dead_letters)
        panes = (
            split[ROWS]
            | "Window"
            >> beam.WindowInto(
                self._assign,
                trigger=self._trigger if streaming else batch_trigger(self._trigger),
                accumulation_mode=self._accumulation,
                allowed_lateness=self._lateness,
            )
            | "Aggregate" >> beam.CombinePerKey(self._aggregation.combine_fn())
            | "Panes" >> beam.ParDo(FormatPanes(self._step))
        )
        if not streaming:
            panes = panes | "Unwindow" >> beam.WindowInto(GlobalWindows())
        concat = _KeepingWindows if streaming and self._closing is not None else beam.ParDo
        aggregates = panes | "Concat" >> concat(ConcatPanes()).with_output_types(pa.Table)
        return WindowOutputs(aggregates, dead_letters)
