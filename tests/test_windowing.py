"""The window step: event-time windows, triggers, aggregates, and late rows to the dead letters.

Streaming behaviour is proved with TestStream on the BundleBasedDirectRunner (the only local
runner that honours a TestStream's watermark); batch behaviour on the FnApiRunner. That legacy
runner keeps only the first bundle's metrics of each step (its state sampler reuses the first
bundle's metrics container), so streaming tests reconcile counts from the outputs themselves,
and the counters are checked on the FnApiRunner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.window import (
    FixedWindows,
    GlobalWindow,
    GlobalWindows,
    Sessions,
    SlidingWindows,
    TimestampedValue,
)
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import PaneInfoTiming

from connectors.arrow_coder import ArrowTableCoder
from connectors.metrics import METRIC_NAMESPACE
from connectors.panes import KeepWindows
from connectors.records import with_positions
from transforms.aggregate import GroupAggregate
from transforms.window_aggregate import BatchPartials, MergePartials
from transforms.windowing import (
    Closing,
    GateClock,
    RowSplitter,
    Window,
    event_micros,
    never_finishing,
    trigger_from_config,
    window_fn,
)

SECOND = 1_000_000


def batch(rows: list[tuple[str, float, int]], first_offset: int) -> pa.Table:
    """(key, event second, value) rows as an Arrow batch with epoch-millisecond event times."""
    table = pa.table(
        {
            "k": [k for k, _, _ in rows],
            "ts": pa.array([round(t * 1000) for _, t, _ in rows], pa.int64()),
            "v": [v for _, _, v in rows],
        }
    )
    return with_positions(table, "in.jsonl", range(first_offset, first_offset + len(rows)))


def panes(table: pa.Table) -> list[tuple]:
    """Aggregate rows as (window start s, window end s, timing, pane index, key, n, total)."""
    starts = table.column("window_start").cast(pa.int64()).to_pylist()
    ends = table.column("window_end").cast(pa.int64()).to_pylist()
    return [
        (
            s // SECOND,
            e // SECOND,
            row["pane_timing"],
            row["pane_index"],
            row["k"],
            row["n"],
            row["total"],
        )
        for s, e, row in zip(starts, ends, table.to_pylist(), strict=True)
    ]


def letters(table: pa.Table) -> list[tuple]:
    return [(row["rule"], row["offset"]) for row in table.to_pylist()]


def run_stream(
    stream: TestStream, window: Window, rows: list[tuple], dead: list[tuple]
) -> dict[str, int]:
    """Run ``window`` on ``stream``; check its outputs; return the step's counters."""
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    out = p | stream | window
    assert_that(out.rows | "Panes" >> beam.FlatMap(panes), equal_to(rows), label="rows")
    assert_that(out.dead_letters | "Letters" >> beam.FlatMap(letters), equal_to(dead), label="dead")
    result = p.run()
    result.wait_until_finish()
    return counters(result)


def counters(result: Any) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    return {c.key.metric.name: c.committed for c in query["counters"]}


def stream() -> TestStream:
    return TestStream(coder=ArrowTableCoder()).advance_watermark_to(0)


def elements(table: pa.Table, at: float = 0) -> list[TimestampedValue]:
    return [TimestampedValue(table, at)]


METRICS = {"n": "count", "total": "sum(v)"}


# --------------------------------------------------------------------------- streaming


def test_late_rows_go_to_dead_letters_and_counts_reconcile():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("a", 2, 1), ("b", 3, 1)], 1)))
        .advance_watermark_to(12)  # [0, 10) fires on time; it stays open until 15
        .add_elements(elements(batch([("a", 5, 10), ("a", 11, 1)], 4)))  # 5: late, allowed
        .advance_watermark_to(25)  # [0, 10) closed at 15
        .add_elements(elements(batch([("a", 8, 100), ("b", 21, 1)], 6)))  # 8: beyond lateness
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=FixedWindows(10),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        allowed_lateness=5,
        step_name="w",
        shards=1,
    )
    rows = [
        (0, 10, "ON_TIME", 0, "a", 2, 2),
        (0, 10, "ON_TIME", 0, "b", 1, 1),
        (0, 10, "LATE", 1, "a", 1, 10),
        (10, 20, "ON_TIME", 0, "a", 1, 1),
        (20, 30, "ON_TIME", 0, "b", 1, 1),
    ]
    dead = [("late", 6)]
    run_stream(events, window, rows=rows, dead=dead)
    # rows in = rows aggregated (discarding panes: each row counted once) + dead-lettered
    assert sum(n for *_, n, _ in rows) + len(dead) == 3 + 2 + 2


def test_without_the_gate_beam_drops_the_late_row_silently():
    # The control for the test above: the same rows through Beam's own WindowInto and
    # CombinePerKey. The row at 8 s, beyond allowed lateness, vanishes without a trace.
    events = (
        TestStream()
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(("a", 1), 1)])
        .advance_watermark_to(25)
        .add_elements([TimestampedValue(("a", 100), 8)])
        .advance_watermark_to_infinity()
    )
    with TestPipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    ) as p:
        sums = (
            p
            | events
            | beam.WindowInto(FixedWindows(10), allowed_lateness=5)
            | beam.CombinePerKey(sum)
        )
        assert_that(sums, equal_to([("a", 1)]))


def test_watermark_trigger_without_late_firings_still_reports_late_rows():
    # AfterWatermark() alone finishes at the on-time pane, and Beam would then drop the late
    # row at 5 s although it is within allowed lateness; the step adds late firings.
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1)], 1)))
        .advance_watermark_to(12)
        .add_elements(elements(batch([("a", 5, 2)], 2)))
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=FixedWindows(10),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        trigger=tr.AfterWatermark(),
        allowed_lateness=5,
    )
    run_stream(
        events,
        window,
        rows=[(0, 10, "ON_TIME", 0, "a", 1, 1), (0, 10, "LATE", 1, "a", 1, 2)],
        dead=[],
    )


def test_late_dead_letter_says_window_lateness_and_by_how_much():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1)], 1)))
        .advance_watermark_to(40)
        .add_elements(elements(batch([("a", 9, 1)], 2)))
        .advance_watermark_to_infinity()
    )
    # The gate knows the watermark on the grid of closing instants (5, 15, 25, 35, ...): at 40
    # it knows 35, a lower bound.
    fields = ["errorMessage", "rule", "step", "run_id", "source", "offset", "payloadString"]
    with TestPipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    ) as p:
        out = (
            p
            | events
            | Window(
                window_fn=FixedWindows(10),
                metrics=METRICS,
                event_time_field="ts",
                allowed_lateness=5,
                step_name="w",
                run_id="r1",
                shards=1,
            )
        )
        assert_that(
            out.dead_letters
            | beam.FlatMap(lambda t: [tuple(r.values()) for r in t.select(fields).to_pylist()]),
            equal_to(
                [
                    (
                        "late: window [1970-01-01T00:00:00Z, 1970-01-01T00:00:10Z) closed at "
                        "1970-01-01T00:00:15Z (allowed lateness 5s) and the watermark had reached "
                        "1970-01-01T00:00:35Z, 25s after the window end",
                        "late",
                        "w",
                        "r1",
                        "in.jsonl",
                        2,
                        '{"k":"a","ts":9000,"v":1}',
                    )
                ]
            ),
        )


@pytest.mark.parametrize(
    ("accumulation", "expected"),
    [
        ("discarding", [("EARLY", 0, 2, 3), ("ON_TIME", 1, 1, 3), ("LATE", 2, 1, 4)]),
        ("accumulating", [("EARLY", 0, 2, 3), ("ON_TIME", 1, 3, 6), ("LATE", 2, 4, 10)]),
    ],
)
def test_early_on_time_and_late_panes(accumulation: str, expected: list[tuple]):
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("a", 2, 2)], 1)))  # 2 rows: early pane
        .add_elements(elements(batch([("a", 3, 3)], 3)))
        .advance_watermark_to(10)  # on-time pane
        .add_elements(elements(batch([("a", 4, 4)], 4)))  # late, within lateness: late pane
        .advance_watermark_to(20)  # closed
        .add_elements(elements(batch([("a", 5, 5)], 5)))  # beyond lateness: dead letter
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=FixedWindows(10),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        trigger=tr.AfterWatermark(early=tr.AfterCount(2), late=tr.AfterCount(1)),
        allowed_lateness=10,
        accumulation=accumulation,
        shards=1,
    )
    run_stream(
        events,
        window,
        rows=[(0, 10, timing, index, "a", n, total) for timing, index, n, total in expected],
        dead=[("late", 5)],
    )


def test_early_panes_after_processing_time():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1)], 1)))
        .advance_processing_time(6)  # early pane: 5 s of processing time since the first row
        .add_elements(elements(batch([("a", 2, 2)], 2)))
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=FixedWindows(10),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        trigger=tr.AfterWatermark(early=tr.AfterProcessingTime(5)),
        shards=1,
    )
    run_stream(
        events,
        window,
        rows=[(0, 10, "EARLY", 0, "a", 1, 1), (0, 10, "ON_TIME", 1, "a", 1, 2)],
        dead=[],
    )


def test_sessions_merge_and_late_rows_judged_by_their_own_session():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("a", 5, 1), ("b", 2, 1)], 1)))
        .add_elements(elements(batch([("a", 12, 1)], 4)))  # joins a's session: [1, 22)
        .advance_watermark_to(30)
        .add_elements(elements(batch([("a", 3, 1)], 5)))  # [3, 13) closed at 13: late
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=Sessions(10), key_fields=["k"], metrics=METRICS, event_time_field="ts", shards=1
    )
    run_stream(
        events,
        window,
        rows=[(1, 22, "ON_TIME", 0, "a", 3, 3), (2, 12, "ON_TIME", 0, "b", 1, 1)],
        dead=[("late", 5)],
    )


def test_sliding_windows_a_row_is_late_when_its_last_window_closed():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("a", 6, 1)], 1)))
        .advance_watermark_to(12)  # [-5, 5) and [0, 10) fire and close
        # 7 is in [0, 10) (closed) and [5, 15) (open): aggregated, never lost; the closed
        # window takes it in a LATE pane because the GroupByKey keeps windows for the grace
        # period. 2 is only in closed windows: late.
        .add_elements(elements(batch([("a", 7, 1), ("a", 2, 1)], 3)))
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=SlidingWindows(size=10, period=5),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        shards=1,
    )
    run_stream(
        events,
        window,
        rows=[
            (-5, 5, "ON_TIME", 0, "a", 1, 1),
            (0, 10, "ON_TIME", 0, "a", 2, 2),
            (0, 10, "LATE", 1, "a", 1, 1),
            (5, 15, "ON_TIME", 0, "a", 2, 2),
        ],
        dead=[("late", 4)],
    )


def test_event_time_from_element_timestamps():
    events = (
        stream()
        .add_elements(elements(batch([("a", 0, 1), ("a", 0, 2)], 1), at=3))
        .advance_watermark_to(12)
        .add_elements(elements(batch([("a", 0, 4)], 3), at=15))
        .add_elements(elements(batch([("a", 0, 8)], 4), at=5))  # its window closed at 10
        .advance_watermark_to_infinity()
    )
    window = Window(window_fn=FixedWindows(10), key_fields=["k"], metrics=METRICS, shards=1)
    run_stream(
        events,
        window,
        rows=[(0, 10, "ON_TIME", 0, "a", 2, 3), (10, 20, "ON_TIME", 0, "a", 1, 4)],
        dead=[("late", 4)],
    )


def test_repeated_count_trigger_in_the_global_window_flushes_the_rest_at_the_end():
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("a", 2, 1), ("a", 3, 1)], 1)))
        .add_elements(elements(batch([("a", 4, 1)], 4)))
        .advance_watermark_to_infinity()
    )
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    out = (
        p
        | events
        | Window(
            window_fn=GlobalWindows(),
            key_fields=["k"],
            metrics=METRICS,
            trigger=tr.Repeatedly(tr.AfterCount(2)),
        )
    )
    result_rows = out.rows | beam.FlatMap(
        lambda t: [(r["window_start"], r["pane_timing"], r["n"]) for r in t.to_pylist()]
    )
    assert_that(result_rows, equal_to([(None, "EARLY", 3), (None, "ON_TIME", 1)]))
    p.run().wait_until_finish()


class InWindow(beam.DoFn):
    """What a downstream DoFn sees of each aggregate table: its window, pane and timestamp."""

    def process(
        self,
        table,
        window=beam.DoFn.WindowParam,
        pane=beam.DoFn.PaneInfoParam,
        timestamp=beam.DoFn.TimestampParam,
    ):
        columns = {
            (s.second, t) for s, t in zip(*table.select([0, 2]).to_pydict().values(), strict=True)
        }
        yield (
            window.start.micros // SECOND,
            window.end.micros // SECOND,
            pane.timing,
            pane.index,
            timestamp == window.max_timestamp(),
            sorted(columns),  # the rows' own window and pane: the table's, and only those
            sorted(table.column("k").to_pylist()),
        )


def test_streaming_aggregates_stay_in_their_window_and_pane():
    # Sessions of a and b overlap; Sessions would merge them in a downstream GroupByKey, so the
    # output is windowed by KeepWindows: each table stays in its session, pane by pane.
    events = (
        stream()
        .add_elements(elements(batch([("a", 1, 1), ("b", 5, 1), ("a", 30, 1)], 1)))
        .advance_watermark_to(20)  # a's [1, 11) and b's [5, 15) fire on time
        .add_elements(elements(batch([("b", 7, 1)], 4)))  # b: late, within lateness
        .advance_watermark_to(50)
        .advance_watermark_to_infinity()
    )
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    out = (
        p
        | events
        | Window(
            window_fn=Sessions(10),
            key_fields=["k"],
            metrics=METRICS,
            event_time_field="ts",
            allowed_lateness=30,
            shards=1,
        )
    )
    assert out.rows.windowing.windowfn == KeepWindows()
    assert_that(
        out.rows | "InWindow" >> beam.ParDo(InWindow()),
        equal_to(
            [
                (1, 11, PaneInfoTiming.ON_TIME, 0, True, [(1, "ON_TIME")], ["a"]),
                (5, 15, PaneInfoTiming.ON_TIME, 0, True, [(5, "ON_TIME")], ["b"]),
                (5, 17, PaneInfoTiming.LATE, 0, True, [(5, "LATE")], ["b"]),  # merged: [5, 17)
                (30, 40, PaneInfoTiming.ON_TIME, 0, True, [(30, "ON_TIME")], ["a"]),
            ]
        ),
        label="windows",
    )
    grouped = (
        out.rows
        | "OneKey" >> beam.Map(lambda table: (0, table.num_rows))
        | "Group" >> beam.GroupByKey()
        | "PerWindow"
        >> beam.MapTuple(
            lambda _, counts, window=beam.DoFn.WindowParam: (
                window.start.micros // SECOND,
                sum(counts),
            )
        )
    )
    assert_that(grouped, equal_to([(1, 1), (5, 1), (5, 1), (30, 1)]), label="grouped")
    p.run().wait_until_finish()


def test_rows_the_gate_cannot_judge_yet_are_aggregated_not_lost():
    # The first batch arrives long after its window closed, before the gate's ticker has ever
    # fired: the gate lets it through, and the grace period keeps the GroupByKey from
    # dropping it, so it is aggregated (LATE) rather than lost.
    events = (
        stream()
        .advance_watermark_to(30)
        .add_elements(elements(batch([("a", 5, 1)], 1)))
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=FixedWindows(10),
        key_fields=["k"],
        metrics=METRICS,
        event_time_field="ts",
        shards=1,
    )
    run_stream(events, window, rows=[(0, 10, "LATE", 0, "a", 1, 1)], dead=[])


# --------------------------------------------------------------------------- batch


def test_fixed_windows_from_a_timestamp_field_in_batch():
    start = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)

    def rows(seconds: list[int], kinds: list[str], amounts: list[float], first: int) -> pa.Table:
        table = pa.table(
            {
                "at": pa.array(
                    [start + dt.timedelta(seconds=s) for s in seconds], pa.timestamp("ms", tz="UTC")
                ),
                "kind": kinds,
                "amount": amounts,
                "user": ["u1", "u2", "u1", "u3"][: len(seconds)],
            }
        )
        return with_positions(table, "orders.jsonl", range(first, first + len(seconds)))

    batches = [
        rows([0, 30, 59, 61], ["x", "x", "y", "x"], [1.0, 3.0, 5.0, 7.0], 1),
        rows([65, 10, 90], ["x", "x", "x"], [2.0, 4.0, None], 5),
        rows([20], ["x"], [1.0], 8).set_column(
            0, "at", pa.array([None], pa.timestamp("ms", tz="UTC"))
        ),
    ]
    metrics = {
        "orders": "count",
        "revenue": "sum(amount)",
        "avg": "mean(amount)",
        "low": "min(amount)",
        "high": "max(amount)",
        "users": "count_distinct(user)",
    }
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create(batches).with_output_types(pa.Table)
        | Window(
            window_fn=window_fn("fixed", size=60),
            key_fields=["kind"],
            metrics=metrics,
            event_time_field="at",
            step_name="per_minute",
        )
    )

    def summary(table: pa.Table) -> list[tuple]:
        return [
            (
                r["window_start"].strftime("%H:%M"),
                r["window_end"].strftime("%H:%M"),
                r["pane_timing"],
                r["kind"],
                r["orders"],
                r["revenue"],
                r["avg"],
                r["low"],
                r["high"],
                r["users"],
            )
            for r in table.to_pylist()
        ]

    assert_that(
        out.rows | "Summary" >> beam.FlatMap(summary),
        equal_to(
            [
                ("12:00", "12:01", "ON_TIME", "x", 3, 8.0, 8.0 / 3, 1.0, 4.0, 2),
                ("12:00", "12:01", "ON_TIME", "y", 1, 5.0, 5.0, 5.0, 5.0, 1),
                ("12:01", "12:02", "ON_TIME", "x", 3, 9.0, 4.5, 2.0, 7.0, 2),
            ]
        ),
        label="aggregates",
    )
    assert_that(
        out.dead_letters | "Letters" >> beam.FlatMap(letters),
        equal_to([("event_time", 8)]),
        label="dead",
    )
    counts = counters(p.run())
    assert (
        counts["per_minute/rows_in"],
        counts["per_minute/rows_out"],
        counts["per_minute/rows_dead_lettered"],
    ) == (8, 7, 1)
    assert counts["per_minute/rule/event_time"] == 1


def test_an_ungrouped_count_per_window_by_default():
    tables = [batch([("a", 1, 1), ("b", 2, 1), ("c", 12, 1)], 1)]
    with TestPipeline(runner="FnApiRunner") as p:
        out = (
            p
            | beam.Create(tables).with_output_types(pa.Table)
            | Window(window_fn=FixedWindows(10), event_time_field="ts")
        )
        assert out.rows.windowing.windowfn == GlobalWindows()  # batch: as before, global
        assert_that(
            out.rows
            | beam.FlatMap(
                lambda t, window=beam.DoFn.WindowParam: [
                    (r["window_start"].second, r["pane_timing"], r["rows"], window)
                    for r in t.to_pylist()
                ]
            ),
            equal_to([(0, "ON_TIME", 2, GlobalWindow()), (10, "ON_TIME", 1, GlobalWindow())]),
        )


def test_sessions_and_sliding_windows_in_batch_merge_partials_across_batches():
    tables = [
        batch([("a", 1, 1), ("a", 5, 2), ("b", 2, 4)], 1),
        batch([("a", 12, 8), ("b", 30, 16)], 4),  # a's 12 joins [1, 15): one session [1, 22)
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        rows = p | beam.Create(tables).with_output_types(pa.Table)
        for name, window in [("sessions", Sessions(10)), ("sliding", SlidingWindows(10, 5))]:
            out = rows | name >> Window(
                window_fn=window, key_fields=["k"], metrics=METRICS, event_time_field="ts"
            )
            expected = {
                "sessions": [
                    (1, 22, "ON_TIME", 0, "a", 3, 11),
                    (2, 12, "ON_TIME", 0, "b", 1, 4),
                    (30, 40, "ON_TIME", 0, "b", 1, 16),
                ],
                "sliding": [
                    (-5, 5, "ON_TIME", 0, "a", 1, 1),
                    (0, 10, "ON_TIME", 0, "a", 2, 3),
                    (5, 15, "ON_TIME", 0, "a", 2, 10),
                    (10, 20, "ON_TIME", 0, "a", 1, 8),
                    (-5, 5, "ON_TIME", 0, "b", 1, 4),
                    (0, 10, "ON_TIME", 0, "b", 1, 4),
                    (25, 35, "ON_TIME", 0, "b", 1, 16),
                    (30, 40, "ON_TIME", 0, "b", 1, 16),
                ],
            }[name]
            assert_that(
                out.rows | f"{name}Rows" >> beam.FlatMap(panes), equal_to(expected), label=name
            )


def test_the_gate_runs_on_the_fnapi_runner_and_its_counters_reconcile():
    # streaming=True puts the lateness gate (state and event-time timers in the global
    # window) in the graph; the FnApiRunner runs it batch-style and reports every counter.
    tables = [
        batch([("a", 1, 1), ("b", 15, 2)], 1),
        batch([("a", 12, 3)], 3).set_column(1, "ts", pa.array([None], pa.int64())),
    ]
    p = TestPipeline(runner="FnApiRunner", options=PipelineOptions(streaming=True))
    out = (
        p
        | beam.Create(tables).with_output_types(pa.Table)
        | Window(
            window_fn=FixedWindows(10),
            key_fields=["k"],
            metrics=METRICS,
            event_time_field="ts",
            step_name="w",
            shards=3,
        )
    )
    assert_that(
        out.rows | beam.FlatMap(panes),
        equal_to([(0, 10, "ON_TIME", 0, "a", 1, 1), (10, 20, "ON_TIME", 0, "b", 1, 2)]),
    )
    counts = counters(p.run())
    assert counts["w/rows_in"] == 3 == counts["w/rows_out"] + counts["w/rows_dead_lettered"]
    assert counts["w/rule/event_time"] == 1
    assert counts["w/aggregates_out"] == 2


# --------------------------------------------------------------------------- pieces


def test_closing_instants_match_beams_window_assignment():
    micros = np.array([-7, 0, 3, 9, 10, 24], np.int64) * SECOND
    for window, lateness in [
        (FixedWindows(10, offset=2), 5),
        (SlidingWindows(10, 4, offset=1), 0),
        (Sessions(6), 3),
    ]:
        closing = Closing.of(window, lateness * SECOND, SECOND)
        for t, closes in zip(micros.tolist(), closing.closes_at(micros).tolist(), strict=True):
            assigned = window.assign(
                type(
                    "Context",
                    (),
                    {"timestamp": Timestamp(micros=t), "element": None, "window": None},
                )()
            )
            last_end = max(w.end.micros for w in assigned)
            assert closes == last_end + lateness * SECOND
            assert closing.grid_floor(closes) == closes or isinstance(window, Sessions)


def test_gate_clock_walks_the_grid_while_busy_and_backs_off_when_idle():
    closing = Closing.of(FixedWindows(10), 0, SECOND)
    clock = GateClock()
    assert clock.on_batch(closing, 13 * SECOND) == 10 * SECOND  # first tick: grid at or before
    assert clock.on_tick(10 * SECOND, closing) == 20 * SECOND
    assert clock.on_batch(closing, 25 * SECOND) is None  # already armed one step ahead
    fired, ticks = 20 * SECOND, 0
    while fired is not None:  # the watermark goes to +inf: the ticker must stop
        fired = clock.on_tick(fired, closing)
        ticks += 1
    assert ticks < 100
    assert clock.armed is None
    assert clock.on_batch(closing, 0) == clock.watermark + 10 * SECOND  # a new row re-arms it


def test_event_times_from_timestamps_dates_and_epoch_millis():
    for column, expected in [
        (pa.array([dt.datetime(1970, 1, 1, 0, 0, 1), None], pa.timestamp("ns")), [SECOND, None]),
        (pa.array([dt.date(1970, 1, 2)], pa.date32()), [86_400 * SECOND]),
        (pa.array([1500, 2**62], pa.int64()), [1500_000, None]),
    ]:
        micros, valid, _ = event_micros(column, "t")
        assert [int(m) if ok else None for m, ok in zip(micros, valid, strict=True)] == expected
    _, valid, problem = event_micros(pa.array(["2024-01-01"]), "t")
    assert not valid.any()
    assert problem.startswith("event time field 't' is string; it must be a timestamp")


def test_rows_missing_a_needed_field_are_dead_lettered():
    splitter = RowSplitter(
        key_fields=["k"], metric_fields=["v"], event_time_field="ts", step="w", run_id="r"
    )
    rows, micros, dead = splitter.split(pa.table({"k": ["a"], "ts": [1]}), Timestamp(0))
    assert rows.num_rows == 0 and len(micros) == 0
    assert [(d["rule"], d["errorMessage"]) for d in dead[0].to_pylist()] == [
        ("missing_field", "field(s) v missing from this batch")
    ]


def test_partials_mean_what_the_report_aggregate_means():
    rng = np.random.default_rng(7)
    n = 500
    table = pa.table(
        {
            "k": ["a"] * n,
            "v": pa.array([None if x < 0.1 else float(x) for x in rng.random(n)]),
            "u": pa.array([None if x == 0 else int(x) for x in rng.integers(0, 9, n)]),
            "s": pa.array([f"s{x}" for x in rng.integers(0, 4, n)]),
            "z": pa.nulls(n, pa.int64()),
        }
    )
    metrics = {
        "n": "count",
        "total": "sum(v)",
        "low": "min(s)",
        "high": "max(u)",
        "avg": "mean(v)",
        "users": "count_distinct(u)",
        "nothing": "sum(z)",
    }
    reference = GroupAggregate(["k"], metrics)
    expected = reference.extract_output(reference.add_input([], table)).to_pylist()

    batches = BatchPartials(["k"], metrics)
    merge = MergePartials(["k"], metrics)
    micros = np.zeros(n, np.int64)
    parts = []
    for lo, hi in ((0, 1), (1, 200), (200, n), (n, n)):  # batches, merged like a runner
        acc = merge.create_accumulator()
        for p in batches.partials(table.slice(lo, hi - lo), micros[lo:hi], None):
            acc = merge.add_input(acc, (p.start, p.end, p.partial))
        parts.append(acc)
    (result,) = merge.extract_output(merge.merge_accumulators(parts)).to_pylist()
    assert result == pytest.approx(expected[0])
    assert merge.extract_output(merge.create_accumulator()).num_rows == 0


def test_triggers_never_finish_and_one_shot_triggers_are_refused():
    patched = never_finishing(tr.AfterWatermark(early=tr.AfterCount(5)))
    assert isinstance(patched.late.underlying, tr.AfterCount)
    flushing = never_finishing(tr.Repeatedly(tr.AfterCount(3)))
    assert flushing == tr.Repeatedly(tr.AfterAny(tr.AfterCount(3), tr.AfterWatermark()))
    with pytest.raises(ValueError, match="fires once and then finishes"):
        never_finishing(tr.AfterCount(3))
    with pytest.raises(ValueError, match="fires once and then finishes"):
        Window(window_fn=FixedWindows(10), trigger=tr.AfterProcessingTime(5))


def test_config_builders():
    built = trigger_from_config(
        {
            "type": "watermark",
            "early": {"type": "processing_time", "delay": 30},
            "late": {"type": "count", "count": 1},
        }
    )
    assert repr(built) == "AfterWatermark(early=AfterProcessingTime(delay=30), late=AfterCount(1))"
    repeated = trigger_from_config({"type": "repeatedly", "trigger": {"type": "count", "count": 2}})
    assert repeated == tr.Repeatedly(tr.AfterCount(2))
    assert trigger_from_config(None) == tr.DefaultTrigger()
    with pytest.raises(ValueError, match="needs 'count'"):
        trigger_from_config({"type": "count"})
    assert window_fn("sliding", size=60, period=10) == SlidingWindows(60, 10)
    assert window_fn("session", gap=300) == Sessions(300)
    assert window_fn("global") == GlobalWindows()
    with pytest.raises(ValueError, match="positive 'size'"):
        window_fn("fixed")
    with pytest.raises(ValueError, match="metric"):
        Window(window_fn=FixedWindows(10), metrics={"x": "median(v)"})
