"""The top step: the N rows with the greatest (or least) value per window and key, whole.

Ranking is checked without Beam (``top_rows``, the batch partials and their merge, which
must give the same rows however the input is split), then in Beam: batch on the FnApiRunner,
streaming with TestStream on the BundleBasedDirectRunner (see tests/test_windowing.py for
why that runner), and from a spec end to end, including a second step over the first's
windows (Nexmark q5's max of counts).
"""

from __future__ import annotations

import itertools
import json
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms.window import TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.records import with_positions
from pipelines.column_lineage import sink_lineage
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import run_spec
from transforms.top import TopRows
from transforms.windowing import Closing, Window, window_fn

SECOND = 1_000_000


def bids(rows: list[tuple[int, float, float | None]], first: int = 1) -> pa.Table:
    """(auction, event second, price) rows with epoch-millisecond event times and positions."""
    table = pa.table(
        {
            "auction": pa.array([a for a, _, _ in rows], pa.int64()),
            "ts": pa.array([round(t * 1000) for _, t, _ in rows], pa.int64()),
            "price": pa.array([p for _, _, p in rows], pa.float64()),
        }
    )
    return with_positions(table, "bids.jsonl", range(first, first + len(rows)))


def ranked(top: TopRows, tables: list[pa.Table], size: int = 10) -> dict:
    """Run the two halves without Beam: per batch partials, then one merge per key and window
    (in a shuffled order); return {(key, window start s): [(auction, price, offset), ...]}."""
    closing = Closing.of(window_fn("fixed", size=size), 0, SECOND)
    partials = top.batch_partials(session_gap=None, per_row=False, step="t")
    merge = top.combine_fn()
    groups: dict = {}
    for table in tables:
        rows, bad, _, _ = top.prepare(table)
        if bad is not None:
            rows = rows.filter(pa.array(~bad))
        micros = rows.column("ts").to_numpy() * 1000
        for p in partials.partials(rows, micros, closing.windows(micros)):
            groups.setdefault((tuple(p.partial[0]), p.start // SECOND), []).append(p)
    out = {}
    for key, parts in groups.items():
        random.Random(7).shuffle(parts)
        accs = [
            merge.add_input(merge.create_accumulator(), (p.start, p.end, p.partial)) for p in parts
        ]
        table = merge.extract_output(merge.merge_accumulators(accs))
        out[key] = [(r["auction"], r["price"], r["_bw_offset"]) for r in table.to_pylist()]
    return out


ROWS = [(1, 1, 10.0), (2, 2, 30.0), (3, 3, 30.0), (1, 4, 20.0), (4, 5, 30.0), (5, 12, 7.0)]


@pytest.mark.parametrize(
    ("n", "ties", "order", "first_window"),
    [
        (1, "all", "greatest", [(2, 30.0, 2), (3, 30.0, 3), (4, 30.0, 5)]),  # q7: every max bid
        (1, "first", "greatest", [(2, 30.0, 2)]),  # the earliest of the tied
        (2, "first", "greatest", [(2, 30.0, 2), (3, 30.0, 3)]),
        (4, "all", "greatest", [(2, 30.0, 2), (3, 30.0, 3), (4, 30.0, 5), (1, 20.0, 4)]),
        (2, "all", "least", [(1, 10.0, 1), (1, 20.0, 4)]),
    ],
)
def test_ranking_keeps_whole_rows_and_handles_ties(n, ties, order, first_window):
    top = TopRows([], "price", n=n, order=order, ties=ties)
    for split in (1, 2, 4, len(ROWS)):  # however the rows are batched: the same rows
        tables = [bids(ROWS[i : i + split], i + 1) for i in range(0, len(ROWS), split)]
        got = ranked(top, tables)
        assert got[((), 0)] == first_window, split
        assert got[((), 10)] == [(5, 7.0, 6)]


def test_ranking_per_key_on_an_expression_matches_a_sort():
    rng = random.Random(3)
    rows = [(rng.randrange(4), rng.uniform(0, 30), float(rng.randrange(6))) for _ in range(300)]
    top = TopRows(["auction"], "price * 2 - 1", n=2, ties="all")
    got = ranked(top, [bids(rows[i : i + 37], i + 1) for i in range(0, len(rows), 37)])
    expected: dict = {}
    for offset, (auction, t, price) in enumerate(rows, 1):
        expected.setdefault(((auction,), int(t // 10) * 10), []).append((auction, price, offset))
    for key, members in expected.items():
        members.sort(key=lambda m: (-m[1], rows[m[2] - 1][1]))  # value, then event time
        # RANK() < 2: fewer than two rows of the key and window have a greater value
        kept = [m for m in members if sum(o[1] > m[1] for o in members) < 2]
        assert got[key] == kept, key


def test_unrankable_values_are_refused_with_a_reason():
    top = TopRows([], "price")
    table = bids([(1, 1, 2.0), (2, 2, None), (3, 3, float("nan"))])
    rows, bad, problem, rule = top.prepare(table)
    assert bad.tolist() == [False, True, True] and rule == "value" and "null or NaN" in problem
    _, bad, problem, _ = TopRows([], "auction + 'x'").prepare(table)  # the expression fails
    assert bad.all() and "cannot compute" in problem
    with pytest.raises(ValueError, match="n must be at least 1"):
        TopRows([], "price", n=0)


def test_top_in_batch_on_the_fnapi_runner_with_dead_letters_and_counts():
    tables = [
        bids([(1, 1, 10.0), (2, 2, 30.0), (3, 3, None)], 1),
        bids([(4, 4, 30.0), (5, 12, 1.0)], 4),
    ]
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create(tables).with_output_types(pa.Table)
        | Window(
            window_fn=window_fn("fixed", size=10),
            aggregation=TopRows([], "price"),
            event_time_field="ts",
            step_name="highest",
        )
    )
    assert_that(
        out.rows
        | "Rows"
        >> beam.FlatMap(
            lambda t: [(r["window_start"].second, r["auction"], r["price"]) for r in t.to_pylist()]
        ),
        equal_to([(0, 2, 30.0), (0, 4, 30.0), (10, 5, 1.0)]),
        label="rows",
    )
    assert_that(
        out.dead_letters | "Dead" >> beam.FlatMap(lambda t: t.column("rule").to_pylist()),
        equal_to(["value"]),
        label="dead",
    )
    result = p.run()
    from tests.test_windowing import counters

    counts = counters(result)
    assert (counts["highest/rows_in"], counts["highest/rows_out"]) == (5, 4)
    assert (counts["highest/rows_dead_lettered"], counts["highest/rule/value"]) == (1, 1)
    assert counts["highest/aggregates_out"] == 3


def test_batch_sessions_are_merged_across_batches_after_one_shuffle():
    """Batch, one pane per window: each batch's candidates (with their proto-sessions) are
    hash-partitioned by key and ranked per partition; proto-sessions of different batches
    merge when they overlap ([2, 5) joins [1, 4) and [4, 7)), not when they only touch
    ([7, 10) after [4, 7)); [6, 9) joins [1, 8) though it starts after [2, 5) ended; whichever
    batch and partition their rows came in."""
    from transforms.partitions import by_partition, partition_of

    gap = 3 * SECOND
    top = TopRows(["auction"], "price", n=1, ties="first")
    closing = Closing.of(window_fn("session", gap=3), 0, SECOND)
    partials = top.batch_partials(session_gap=gap, per_row=False, step="t")
    batches = [
        [(1, 1, 5.0), (1, 7, 8.0), (2, 1, 4.0), (3, 2, 2.0)],
        [(1, 2, 9.0), (2, 30, 2.0), (1, 20, 1.0), (3, 6, 3.0)],
        [(1, 4, 7.0), (3, 1, 1.0), (3, 3, 1.0), (3, 5, 1.0)],
    ]
    parts: dict[int, list[pa.Table]] = {}
    for rows in batches:
        table, _, _, _ = top.prepare(bids(rows))
        micros = table.column("ts").to_numpy() * 1000
        found = partials.candidates(table, micros, closing.windows(micros))
        for p, part in by_partition(found, partition_of(found, ["auction"], 2), 2):
            parts.setdefault(p, []).append(part)
    out = []
    for tables in parts.values():
        rows, starts, ends = top.ranked_windows(pa.concat_tables(tables), gap, "t")
        out += zip(
            rows.column("auction").to_pylist(),
            starts // SECOND,
            ends // SECOND,
            rows.column("price").to_pylist(),
            strict=True,
        )
    assert sorted(out) == [
        (1, 1, 7, 9.0),
        (1, 7, 10, 8.0),
        (1, 20, 23, 1.0),
        (2, 1, 4, 4.0),
        (2, 30, 33, 2.0),
        (3, 1, 9, 3.0),
    ]


def _stream() -> TestStream:
    return TestStream(coder=ArrowTableCoder()).advance_watermark_to(0)


def test_streaming_top_per_session_with_late_rows():
    """Sessions per bidder merge across batches; a row after its session closed is a dead
    letter; a row within the allowed lateness updates the session in a LATE pane."""
    events = (
        _stream()
        .add_elements([TimestampedValue(bids([(7, 1, 5.0), (7, 4, 9.0), (8, 2, 1.0)], 1), 0)])
        .add_elements([TimestampedValue(bids([(7, 8, 9.0)], 4), 0)])  # 7's session: [1, 13)
        .advance_watermark_to(22)  # both sessions fire on time; 8's [2, 7) closed at 15
        .add_elements([TimestampedValue(bids([(8, 3, 4.0)], 5), 0)])  # [3, 8) closed at 16
        .add_elements([TimestampedValue(bids([(7, 12, 50.0)], 6), 0)])  # [12, 17): until 25
        .advance_watermark_to_infinity()
    )
    window = Window(
        window_fn=window_fn("session", gap=5),
        aggregation=TopRows(["auction"], "price", ties="all"),
        key_fields=["auction"],
        event_time_field="ts",
        allowed_lateness=8,
        step_name="best",
    )
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    out = p | events | window

    def summary(table: pa.Table) -> list[tuple]:
        return [
            (
                r["window_start"].second,
                r["window_end"].second,
                r["pane_timing"],
                r["auction"],
                r["price"],
                r["_bw_offset"],
            )
            for r in table.to_pylist()
        ]

    assert_that(
        out.rows | beam.FlatMap(summary),
        equal_to(
            [
                (1, 13, "ON_TIME", 7, 9.0, 2),
                (1, 13, "ON_TIME", 7, 9.0, 4),
                (2, 7, "ON_TIME", 8, 1.0, 3),
                (1, 17, "LATE", 7, 50.0, 6),
            ]
        ),
        label="rows",
    )
    assert_that(
        out.dead_letters
        | "Dead"
        >> beam.FlatMap(
            lambda t: list(
                zip(t.column("rule").to_pylist(), t.column("offset").to_pylist(), strict=True)
            )
        ),
        equal_to([("late", 5)]),
        label="dead",
    )
    p.run().wait_until_finish()


def test_a_spec_ranks_counts_per_window_over_a_prior_window_step(tmp_path):
    """Nexmark q5's shape: bids counted per auction in sliding windows, then per window the
    auction(s) with the most bids (all ties), in the windows the counts came from."""
    src = tmp_path / "bids.jsonl"
    rows = [(1, 1), (1, 2), (2, 3), (2, 4), (3, 6), (3, 7), (3, 8), (1, 9), (2, 11), (2, 12)]
    src.write_text("".join(json.dumps({"auction": a, "at": t * 1000}) + "\n" for a, t in rows))
    spec = spec_from_data(
        {
            "name": "hot_items",
            "sources": [{"name": "bids", "type": "file", "path": str(src)}],
            "steps": [
                {
                    "name": "counts",
                    "type": "window",
                    "event_time": "at",
                    "window": {"type": "sliding", "size": 10, "period": 5},
                    "group_by": ["auction"],
                    "metrics": {"num": "count"},
                },
                {
                    "name": "hottest",
                    "type": "top",
                    "window": {"type": "input"},
                    "value": "num",
                },
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"event_log": str(tmp_path / "events.jsonl.log")},
        }
    )
    summary = run_spec(spec)
    assert summary.reconciled
    got = sorted(
        (r["window_start"].second, r["auction"], r["num"])
        for r in pq.read_table(tmp_path / "out").to_pylist()
    )
    # windows [-5,5): 1:2, 2:2 ; [0,10): 1:3, 2:2, 3:3 ; [5,15): 3:3, 2:2, 1:1 ; [10,20): 2:2
    expected = {55: [(1, 2), (2, 2)], 0: [(1, 3), (3, 3)], 5: [(3, 3)], 10: [(2, 2)]}
    assert got == sorted((s, a, n) for s, pairs in expected.items() for a, n in pairs)
    lineage = sink_lineage(spec, {"bids": ["auction", "at"]})["out"]
    assert [s.subtype for s in lineage.fields["auction"][0].steps] == ["IDENTITY"]
    assert lineage.fields["num"] == [] and "window_start" in lineage.fields  # a count


def test_top_spec_errors_name_the_path(tmp_path):
    base = {
        "name": "t",
        "sources": [{"name": "bids", "type": "file", "path": str(tmp_path / "b.jsonl")}],
        "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
    }
    with pytest.raises(SpecError) as caught:
        spec_from_data(
            {**base, "steps": [{"name": "t", "type": "top", "value": "price", "ties": "some"}]}
        )
    assert "ties" in str(caught.value)


def test_merge_is_associative_over_any_grouping():
    """Merging candidate tables in any grouping gives the same rows (a combiner's contract)."""
    top = TopRows([], "price", n=2, ties="first")
    merge = top.combine_fn()
    partials = top.batch_partials(session_gap=None, per_row=False, step="t")
    parts = []
    for i in range(6):
        table, _, _, _ = top.prepare(bids([(i, i, float(i % 3))], i + 1))
        (p,) = partials.partials(table, np.array([i * SECOND]), None)
        parts.append(p.partial)
    results = set()
    for perm in itertools.islice(itertools.permutations(parts), 0, 720, 97):
        left = merge.add_input(merge.create_accumulator(), (None, None, perm[0]))
        for part in perm[1:3]:
            left = merge.add_input(left, (None, None, part))
        right = merge.merge_accumulators(
            [merge.add_input(merge.create_accumulator(), (None, None, q)) for q in perm[3:]]
        )
        table = merge.extract_output(merge.merge_accumulators([left, right]))
        results.add(tuple(table.column("auction").to_pylist()))
    assert results == {(2, 5)}  # price 2.0 twice: the earlier event time first


def test_streaming_max_of_counts_stays_in_the_sliding_windows_it_came_from():
    """q5 in streaming: counts per auction in sliding windows (size 10, period 5), then per
    window the auctions with the most bids; the second step takes each count's window from
    its columns (a count of [0, 10) stamped at 9.999999 s must not land in [5, 15) too)."""
    events = (
        _stream()
        .add_elements([TimestampedValue(bids([(1, 1, 0.0), (2, 3, 0.0), (1, 6, 0.0)], 1), 0)])
        .add_elements([TimestampedValue(bids([(2, 7, 0.0), (2, 8, 0.0)], 4), 0)])
        .advance_watermark_to(12)  # [-5, 5) and [0, 10) fire
        .add_elements([TimestampedValue(bids([(3, 13, 0.0)], 6), 0)])
        .advance_watermark_to_infinity()
    )
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    counts = (
        p
        | events
        | "counts"
        >> Window(
            window_fn=window_fn("sliding", size=10, period=5),
            key_fields=["auction"],
            metrics={"num": "count"},
            event_time_field="ts",
            step_name="counts",
        )
    )
    hottest = counts.rows | "hottest" >> Window(
        window_fn=window_fn("input"), aggregation=TopRows([], "num"), step_name="hottest"
    )

    def summary(table: pa.Table) -> list[tuple]:
        return [
            (round(r["window_start"].timestamp()), r["pane_timing"], r["auction"], r["num"])
            for r in table.to_pylist()
        ]

    assert_that(
        hottest.rows | beam.FlatMap(summary),
        equal_to(
            [
                (-5, "ON_TIME", 1, 1),  # [-5, 5): 1 once, 2 once: both
                (-5, "ON_TIME", 2, 1),
                (0, "ON_TIME", 2, 3),  # [0, 10): 1 twice, 2 three times
                (5, "ON_TIME", 2, 2),  # [5, 15): 1 once, 2 twice, 3 once
                (10, "ON_TIME", 3, 1),  # [10, 20): 3 once
            ]
        ),
        label="rows",
    )
    assert_that(hottest.dead_letters, equal_to([]), label="dead")
    p.run().wait_until_finish()
