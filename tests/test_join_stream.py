"""The ``join`` step on unbounded input: keyed state and event-time timers, fed by a
TestStream on Beam's BundleBasedDirectRunner (in process; TestStream needs it): windows
joined when they close, left rows emitted unmatched at the window end, late rows dead-lettered,
Nexmark query 3's buffering in the global window, the same pairs as the bounded path for
in-order input, and a streaming spec translated for Dataflow."""

from __future__ import annotations

import collections
import random
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.coders import StrUtf8Coder, TupleCoder
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import (
    FixedWindows,
    GlobalWindows,
    Sessions,
    SlidingWindows,
    TimestampedValue,
)

import transforms.join as join_module
from connectors.arrow_coder import ArrowTableCoder
from connectors.records import with_positions
from transforms.join import Join, JoinSide

_SEEN: dict[str, list] = {}


class Counts:
    """Stands in for NodeCounters: the BundleBasedDirectRunner loses the counters of all but
    a stream's first bundle, so the step's counts are recorded here (same process)."""

    seen: collections.Counter = collections.Counter()

    def __init__(self, node: str) -> None:
        self.node = node

    def inc(self, what: str, n: int = 1) -> None:
        Counts.seen[f"{self.node}/{what}"] += n


@pytest.fixture(autouse=True)
def counts(monkeypatch: pytest.MonkeyPatch) -> collections.Counter:
    Counts.seen = collections.Counter()
    monkeypatch.setattr(join_module, "NodeCounters", Counts)
    return Counts.seen


def _seen(value: Any, kind: str) -> None:
    _SEEN.setdefault(kind, []).append(value)


class _Stamped(beam.DoFn):
    def process(self, table, timestamp=beam.DoFn.TimestampParam):
        for row in table.to_pylist():
            yield row, timestamp.micros // 1_000_000


def stream() -> TestStream:
    return TestStream(coder=TupleCoder([StrUtf8Coder(), ArrowTableCoder()])).advance_watermark_to(0)


def side(which: str, table: pa.Table, at: float) -> list[TimestampedValue]:
    return [TimestampedValue((which, table), at)]


def run(events: TestStream, join: Join) -> tuple[list[tuple[dict, int]], list[tuple]]:
    """Run ``join`` on the stream's ``l``/``r`` tables; its rows (with the second they were
    emitted at) and its dead letters (rule, offset)."""
    _SEEN.clear()
    p = beam.Pipeline("BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    both = p | events
    left = both | "L" >> beam.Filter(lambda e: e[0] == "l") | "LT" >> beam.Map(lambda e: e[1])
    right = both | "R" >> beam.Filter(lambda e: e[0] == "r") | "RT" >> beam.Map(lambda e: e[1])
    out = {"left": left, "right": right} | join
    out.rows | "Rows" >> beam.ParDo(_Stamped()) | "KeepRows" >> beam.Map(_seen, "rows")
    (
        out.dead_letters
        | "Dead" >> beam.FlatMap(lambda t: [(r["rule"], r["offset"]) for r in t.to_pylist()])
        | "KeepDead" >> beam.Map(_seen, "dead")
    )
    p.run().wait_until_finish()
    return _SEEN.get("rows", []), sorted(_SEEN.get("dead", []))


def persons(ids: list, seconds: list[float], first: int = 0) -> pa.Table:
    table = pa.table({"id": ids, "t": pa.array([int(s * 1000) for s in seconds], pa.int64())})
    return with_positions(table, "persons", range(first, first + len(ids)))


def auctions(ids: list, sellers: list, seconds: list[float], first: int = 0) -> pa.Table:
    table = pa.table(
        {
            "aid": ids,
            "seller": sellers,
            "t": pa.array([int(s * 1000) for s in seconds], pa.int64()),
        }
    )
    return with_positions(table, "auctions", range(first, first + len(ids)))


def reconciled(counts: collections.Counter, step: str = "join") -> bool:
    c = {k.split("/", 1)[1]: v for k, v in counts.items() if k.startswith(step + "/")}
    return c.get("rows_in", 0) == c.get("rows_out", 0) + c.get("rows_filtered", 0) + c.get(
        "rows_dead_lettered", 0
    )


def test_fixed_windows_join_at_the_window_end_and_late_rows_are_dead_letters(counts):
    """Query 8's shape on a stream: a person and their auction in the same 10 s window are
    joined when the window closes; a left join emits the person without auctions then, at
    the window end; rows of a window already fired for their key go to the dead letters."""
    events = (
        stream()
        .add_elements(side("r", auctions([10, 11], [1, 2], [1, 2]), 1))
        .add_elements(side("l", persons([1, 4], [3, 5]), 3))
        .advance_watermark_to(12)  # [0, 10) closes for keys 1, 2, 4
        .add_elements(side("l", persons([2, 3], [4, 14], first=2), 14))  # 2@4: late
        .add_elements(side("r", auctions([12], [3], [15], first=2), 15))
        .advance_watermark_to(30)
        .add_elements(side("r", auctions([13], [3], [16], first=3), 16))  # late: [10, 20) fired
        .advance_watermark_to_infinity()
    )
    join = Join(
        left=JoinSide("persons", ("id",), "t"),
        right=JoinSide("auctions", ("seller",), "t", prefix="a_"),
        how="left",
        window_fn=FixedWindows(10),
    )
    rows, dead = run(events, join)
    got = sorted((r["id"], r["a_aid"], r["window_start"].second, at) for r, at in rows)
    # emitted at the window end (the timer's time): 9.999999 s -> second 9
    assert got == [(1, 10, 0, 9), (3, 12, 10, 19), (4, None, 0, 9)]
    assert dead == [("late", 2), ("late", 3)]
    assert counts["join/rows_in"] == 8 and counts["join/rows_dead_lettered"] == 2
    assert counts["join/rows_filtered"] == 1  # auction 11: its seller never came in time
    assert counts["join/rows_joined"] == 3
    assert reconciled(counts)


def test_query3_auctions_wait_for_their_person_who_is_kept_for_a_while(counts):
    """Query 3 in the global window: auctions that arrive before their seller wait in state
    and are emitted when the person arrives; later auctions join the kept person at once
    (``unique: left``: not kept), until the person's ``keep`` ends (a timer clears them)."""
    events = (
        stream()
        .add_elements(side("r", auctions([10, 11], [1, 1], [1, 2]), 2))
        .advance_watermark_to(5)
        .add_elements(side("l", persons([1, 2], [5, 6]), 6))
        .add_elements(side("r", auctions([12], [1], [7], first=2), 7))
        .advance_watermark_to(20)  # person 1 (kept 10 s) expired at 15
        .add_elements(side("r", auctions([13], [1], [21], first=3), 21))
        .advance_watermark_to_infinity()
    )
    join = Join(
        left=JoinSide("persons", ("id",), "t", keep=10),
        right=JoinSide("auctions", ("seller",), "t", prefix="a_", keep=30),
        unique="left",
    )
    rows, dead = run(events, join)
    assert sorted((r["id"], r["a_aid"], at) for r, at in rows) == [
        (1, 10, 6),
        (1, 11, 6),
        (1, 12, 7),
    ]
    assert dead == []
    assert counts["join/rows_joined"] == 3
    # person 2 and auction 13 never met anyone: filtered when their keep ended
    assert counts["join/rows_filtered"] == 2 and counts["join/rows_out"] == 4
    assert reconciled(counts)


def test_a_left_join_in_the_global_window_emits_unmatched_rows_when_their_keep_ends(counts):
    events = (
        stream()
        .add_elements(side("l", persons([1, 2], [0, 0]), 0))
        .add_elements(side("r", auctions([10], [1], [3]), 3))
        .advance_watermark_to_infinity()
    )
    join = Join(
        left=JoinSide("persons", ("id",), "t", keep=5, fields=("id",)),
        right=JoinSide("auctions", ("seller",), "t", keep=5, fields=("aid",)),
        how="left",
    )
    rows, _ = run(events, join)
    assert sorted(((r["id"], r["aid"]), at) for r, at in rows) == [((1, 10), 3), ((2, None), 5)]
    assert reconciled(counts) and counts["join/rows_out"] == 3


def random_events(seed: int, n: int) -> tuple[pa.Table, pa.Table]:
    rng = random.Random(seed)
    people = sorted((rng.uniform(0, 60), rng.randrange(8)) for _ in range(n))
    lots = sorted((rng.uniform(0, 60), rng.randrange(8)) for _ in range(2 * n))
    return (
        persons([k for _, k in people], [t for t, _ in people]),
        auctions(list(range(len(lots))), [k for _, k in lots], [t for t, _ in lots]),
    )


def in_order(left: pa.Table, right: pa.Table, step: float = 15) -> TestStream:
    """Both sides in event-time order, a batch per ``step`` seconds, the watermark behind."""
    events = stream()
    for start in range(0, 64, int(step)):
        for name, table in (("l", left), ("r", right)):
            seconds = pa.compute.divide(table.column("t"), 1000).to_numpy()
            mask = (seconds >= start) & (seconds < start + step)
            if mask.any():
                events = events.add_elements(side(name, table.filter(pa.array(mask)), start))
        events = events.advance_watermark_to(start + step)
    return events.advance_watermark_to_infinity()


def bounded_pairs(left: pa.Table, right: pa.Table, join: Join) -> list[tuple]:
    from tests.test_join import run_join

    rows, _, _ = run_join([left], [right], join, ("id", "aid", "window_start"))
    return sorted(rows, key=repr)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("window_fn", "keep", "how"),
    [
        (SlidingWindows(10, 5), None, "inner"),
        (Sessions(3), None, "left"),
        (GlobalWindows(), 8, "left"),
    ],
    ids=["sliding", "sessions", "global"],
)
def test_in_order_streams_give_the_bounded_paths_pairs(window_fn, keep, how):
    left, right = random_events(7, 24)

    def make() -> Join:
        return Join(
            left=JoinSide("persons", ("id",), "t", keep=keep),
            right=JoinSide("auctions", ("seller",), "t", keep=keep, fields=("aid",)),
            how=how,
            window_fn=window_fn,
            partitions=4,
        )

    expected = bounded_pairs(left, right, make())
    rows, dead = run(in_order(left, right), make())
    got = sorted(((r["id"], r["aid"], r.get("window_start")) for r, _ in rows), key=repr)
    assert dead == []
    assert len(expected) > 10
    assert got == expected


def test_a_streaming_join_spec_builds_and_translates_for_dataflow(tmp_path):
    """Persons and auctions from Kafka (unbounded), joined per 10 s window as query 8: the
    spec builds and translates for Dataflow as a streaming job whose join is a stateful ParDo
    on unbounded input (no network: the broker is never contacted)."""
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")  # the gcp extra
    from pipelines.loading import spec_from_data
    from pipelines.plan import translate
    from tests.stream_specs import BROKER

    def topic(name: str) -> dict:
        return {
            "name": name,
            "type": "kafka",
            "bootstrap_servers": BROKER,
            "topics": name,
            "group_id": "beamwright",
        }

    spec = spec_from_data(
        {
            "name": "query8",
            "sources": [topic("persons"), topic("auctions")],
            "steps": [
                {
                    "name": "new_sellers",
                    "type": "join",
                    "left": {"input": "persons", "on": "id", "fields": ["id", "name"]},
                    "right": {"input": "auctions", "on": "seller", "fields": ["reserve"]},
                    "window": {"type": "fixed", "size": 10},
                }
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"type": "kafka", "bootstrap_servers": BROKER, "topic": "dead"},
            "lineage": {"enabled": False},
        }
    )
    plan = translate(spec, "dataflow", streaming=True)
    assert plan["streaming"] is True and plan["job"]["type"] == "JOB_TYPE_STREAMING"
    steps = [st for st in plan["steps"] if st["name"].startswith("new_sellers/")]
    (join,) = [st for st in steps if st["name"] == "new_sellers/Join/Join"]
    assert join["kind"] == "ParDo" and join["bounded"] is False
    assert not any(st["kind"] == "GroupByKey" for st in steps)  # state, not a CoGroupByKey


def test_a_streaming_spec_joins_two_filtered_views_of_one_topic(tmp_path):
    """A whole streaming spec on the BundleBasedDirectRunner, as the Nexmark specs are built:
    one stream of events, persons and auctions picked out by filters, joined per window,
    written per window; a late auction goes to the dead letters with its position."""
    import json as json_module

    from pipelines.loading import spec_from_data
    from pipelines.run import stream_spec
    from tests.plugin_kinds.teststream import STREAMS

    def events(rows: list[tuple], first: int) -> pa.Table:
        table = pa.table(
            {
                "id": [r[0] for r in rows],
                "name": [r[1] for r in rows],
                "seller": pa.array([r[2] for r in rows], pa.int64()),
                "t": pa.array([r[3] * 1000 for r in rows], pa.int64()),
            }
        )
        return with_positions(table, "events/0", range(first, first + len(rows)))

    STREAMS["join_events"] = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(events([(1, "ann", None, 1), (7, None, 1, 2)], 0), 2)])
        .add_elements([TimestampedValue(events([(8, None, 2, 3), (2, "bob", None, 12)], 2), 12)])
        .advance_watermark_to(15)
        .add_elements([TimestampedValue(events([(9, None, 1, 4)], 4), 16)])  # [0, 10): late
        # [10, 20) fires before the end: this runner holds no watermark for a pending timer,
        # so what a timer emits after the jump to +inf reaches a closed sink window
        .advance_watermark_to(30)
        .advance_watermark_to_infinity()
    )
    spec = spec_from_data(
        {
            "name": "stream_join",
            "plugins": ["tests.plugin_kinds.teststream"],
            "sources": [{"name": "events", "type": "teststream", "stream": "join_events"}],
            "steps": [
                {"name": "persons", "type": "filter", "where": "name is not null"},
                {
                    "name": "auctions",
                    "type": "filter",
                    "input": "events",
                    "where": "seller is not null",
                },
                {
                    "name": "new_sellers",
                    "type": "join",
                    "left": {
                        "input": "persons",
                        "on": "id",
                        "event_time": "t",
                        "fields": ["id", "name"],
                    },
                    "right": {
                        "input": "auctions",
                        "on": "seller",
                        "event_time": "t",
                        "fields": ["id"],
                    },
                    "how": "left",
                    "window": {"type": "fixed", "size": 10},
                },
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {
                "runner_options": {"runner": "BundleBasedDirectRunner"},
                "error_threshold": 1.0,
            },
            "lineage": {"enabled": False},
        }
    )
    summary = stream_spec(spec)
    assert summary.status == "COMPLETE"
    written = [
        json_module.loads(line)
        for path in (tmp_path / "out").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert sorted((r["id"], r["name"], r["auctions_id"]) for r in written) == [
        (1, "ann", 7),
        (2, "bob", None),
    ]
    dead = [
        json_module.loads(line)
        for path in (tmp_path / "dead").rglob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [(d["rule"], d["step"], d["offset"]) for d in dead] == [("late", "new_sellers", 4)]
