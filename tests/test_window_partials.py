"""The window step's work inside one Arrow batch, without Beam: which windows each row belongs
to, and the partial aggregates per key and window that become Beam's elements."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.window import FixedWindows, Sessions, SlidingWindows
from apache_beam.utils.timestamp import Timestamp

from connectors.errors import RunError
from transforms.window_aggregate import BatchPartials, MergePartials
from transforms.windowing import Closing, counts_elements

SECOND = 1_000_000
METRICS = {"n": "count", "total": "sum(v)"}


def beam_windows(window_fn, micros: int) -> list[tuple[int, int]]:
    context = type(
        "Context", (), {"timestamp": Timestamp(micros=micros), "element": None, "window": None}
    )()
    return [(w.start.micros, w.end.micros) for w in window_fn.assign(context)]


@pytest.mark.parametrize(
    "window_fn",
    [FixedWindows(10, offset=2), SlidingWindows(10, 4, offset=1), SlidingWindows(10, 5)],
)
def test_windows_are_beams_assignment_row_by_row(window_fn):
    micros = np.array([-7, 0, 3, 9, 10, 24, 25], np.int64) * SECOND + 17
    row, start, end = Closing.of(window_fn, 0, SECOND).windows(micros)
    expected = [
        (i, s, e) for i, t in enumerate(micros.tolist()) for s, e in beam_windows(window_fn, t)
    ]
    assert list(zip(row.tolist(), start.tolist(), end.tolist(), strict=True)) == expected


def partials(rows: list[tuple], window_fn, **options) -> list[tuple]:
    """(key, start s, end s, earliest s, n, total) per partial of one batch of (k, t s, v)."""
    table = pa.table({"k": [k for k, _, _ in rows], "v": [v for _, _, v in rows]})
    micros = np.array([t * SECOND for _, t, _ in rows], np.int64)
    gap = window_fn.gap_size.micros if isinstance(window_fn, Sessions) else None
    windows = Closing.of(window_fn, 0, SECOND).windows(micros)
    made = BatchPartials(["k"], METRICS, session_gap=gap, **options).partials(
        table, micros, windows
    )
    return [
        (p.partial[0][0], p.start // SECOND, p.end // SECOND, p.earliest // SECOND, *p.partial[1])
        for p in made
    ]


def test_one_partial_per_key_and_window_in_the_order_of_their_first_row():
    rows = [("b", 11, 1), ("a", 1, 2), ("b", 12, 3), ("a", 5, None), ("a", 14, 5)]
    assert partials(rows, FixedWindows(10)) == [
        ("b", 10, 20, 11, 2, 4),
        ("a", 0, 10, 1, 2, 2),
        ("a", 10, 20, 14, 1, 5),
    ]


def test_a_sliding_row_counts_in_every_window_it_belongs_to():
    assert partials([("a", 7, 1), ("a", 8, 2)], SlidingWindows(10, 5)) == [
        ("a", 5, 15, 7, 2, 3),
        ("a", 0, 10, 7, 2, 3),
    ]


def test_a_keys_rows_closer_than_the_gap_make_one_proto_session():
    rows = [("a", 1, 1), ("b", 2, 1), ("a", 30, 1), ("a", 9, 1), ("a", 19, 1), ("b", 12, 1)]
    # a: 1, 9 (8 s apart) and 19 (10 s: not closer than the gap) -> [1, 19); [19, 29); [30, 40)
    # b: 2 and 12 are exactly a gap apart: two sessions, as Beam's merge leaves them
    assert sorted(partials(rows, Sessions(10))) == [
        ("a", 1, 19, 1, 2, 2),
        ("a", 19, 29, 19, 1, 1),
        ("a", 30, 40, 30, 1, 1),
        ("b", 2, 12, 2, 1, 1),
        ("b", 12, 22, 12, 1, 1),
    ]


def test_proto_sessions_merged_across_batches_are_the_sessions_of_all_rows():
    rng = np.random.default_rng(3)
    times = sorted(rng.integers(0, 400, 60).tolist())
    rows = [("a" if i % 3 else "b", t, 1) for i, t in enumerate(rng.permutation(times).tolist())]

    def union(windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
        merged: list[list[int]] = []
        for start, end in sorted(windows):
            if merged and start < merged[-1][1]:  # Beam's Sessions: overlapping, not touching
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        return [tuple(w) for w in merged]

    for key in ("a", "b"):
        per_row = union([(t, t + 10) for k, t, _ in rows if k == key])
        batched = [
            (start, end)
            for batch in (rows[:17], rows[17:40], rows[40:])
            for k, start, end, *_ in partials(batch, Sessions(10))
            if k == key
        ]
        assert union(batched) == per_row


def test_per_row_partials_for_triggers_that_count_rows():
    rows = [("a", 1, 1), ("a", 2, 2), ("a", 3, 3)]
    assert partials(rows, FixedWindows(10), per_row=True) == [
        ("a", 0, 10, 1, 1, 1),
        ("a", 0, 10, 2, 1, 2),
        ("a", 0, 10, 3, 1, 3),
    ]
    assert counts_elements(tr.AfterWatermark(early=tr.AfterCount(2)))
    assert counts_elements(tr.Repeatedly(tr.AfterAny(tr.AfterCount(3), tr.AfterWatermark())))
    assert not counts_elements(tr.AfterWatermark(late=tr.AfterCount(1)))
    assert not counts_elements(tr.AfterWatermark(early=tr.AfterProcessingTime(5)))


def test_an_all_null_json_column_aggregates_to_nothing():
    # JSON gives a batch whose field is always null the Arrow type null (Arrow's distinct
    # kernel crashes the process on it)
    metrics = {"n": "count", "total": "sum(v)", "low": "min(v)", "avg": "mean(v)"}
    metrics["seen"] = "count_distinct(v)"
    table = pa.table({"k": pa.nulls(2), "v": pa.nulls(2)})
    made = BatchPartials(["k"], metrics).partials(table, np.zeros(2, np.int64), None)
    merge = MergePartials(["k"], metrics)
    result = merge.extract_output(
        merge.add_input(merge.create_accumulator(), (0, 0, made[0].partial))
    )
    assert result.to_pylist() == [
        {"k": None, "n": 2, "total": None, "low": None, "avg": None, "seen": 0}
    ]


def test_fields_arrow_cannot_aggregate_fail_naming_the_step():
    table = pa.table({"k": ["a"], "tags": pa.array([["x"]])})
    aggregate = BatchPartials(["k"], {"top": "max(tags)"}, step="per_minute")
    with pytest.raises(RunError, match="per_minute: cannot group or aggregate"):
        aggregate.partials(table, np.zeros(1, np.int64), None)


def test_report_distinct_count_of_an_all_null_json_column():
    """pyarrow's ``distinct`` crashes the process on a column of type ``null`` (all-null JSON
    values); the report aggregate counts it as the window step does: zero distinct values."""
    from transforms.aggregate import GroupAggregate

    report = GroupAggregate(["k"], {"d": "count_distinct(x)", "n": "count"})
    table = pa.table({"k": ["a", "b", "a"], "x": pa.nulls(3)})
    out = report.extract_output(report.add_input(report.create_accumulator(), table))
    assert sorted(out.to_pylist(), key=lambda r: r["k"]) == [
        {"k": "a", "d": 0, "n": 2},
        {"k": "b", "d": 0, "n": 1},
    ]


def test_processing_time_delays_are_whole_seconds_and_translate():
    from apache_beam.runners import pipeline_context

    from transforms.windowing import never_finishing, trigger_from_config

    early = {"type": "watermark", "early": {"type": "processing_time", "delay": 10}}
    trigger = never_finishing(trigger_from_config(early))
    assert trigger.to_runner_api(pipeline_context.PipelineContext())  # Flink/Dataflow form
    with pytest.raises(ValueError, match="whole seconds"):
        trigger_from_config({"type": "processing_time", "delay": 0.5})
