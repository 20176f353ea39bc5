"""The ``join`` step on bounded input: from a spec (two named inputs, dead letters, counts,
lineage), and the transform's pairs per window kind on the FnApiRunner; spec errors."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.transforms.window import Sessions, SlidingWindows

from connectors.metrics import METRIC_NAMESPACE
from connectors.records import with_positions
from pipelines.column_lineage import sink_lineage
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import run_spec
from transforms.join import Join, JoinSide

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def iso(seconds: float) -> str:
    return at(seconds).isoformat().replace("+00:00", "Z")


def write_jsonl(path: Any, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def join_spec(tmp_path: Any, step: dict, *, persons: list[dict], auctions: list[dict]) -> Any:
    return spec_from_data(
        {
            "name": "joins",
            "sources": [
                {
                    "name": "persons",
                    "type": "file",
                    "path": write_jsonl(tmp_path / "p.jsonl", persons),
                },
                {
                    "name": "auctions",
                    "type": "file",
                    "path": write_jsonl(tmp_path / "a.jsonl", auctions),
                },
            ],
            "steps": [
                {
                    "name": "people",
                    "type": "validate",
                    "input": "persons",
                    "fields": {"id": {"type": "int64"}, "t": {"type": "timestamp"}},
                },
                {
                    "name": "lots",
                    "type": "validate",
                    "input": "auctions",
                    "fields": {"seller": {"type": "int64"}, "t": {"type": "timestamp"}},
                },
                {"name": "new_auctions", "type": "join", **step},
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 1.0},
            "lineage": {"event_log": str(tmp_path / "events.log")},
        }
    )


PERSONS = [
    {"id": 1, "name": "ann", "state": "OR", "t": iso(1)},
    {"id": 2, "name": "bob", "state": "CA", "t": iso(2)},
    {"id": 3, "name": "cy", "state": "ID", "t": iso(25)},
    {"id": None, "name": "nobody", "state": "OR", "t": iso(3)},
]
AUCTIONS = [
    {"aid": 10, "seller": 1, "reserve": 5, "t": iso(4)},
    {"aid": 11, "seller": 1, "reserve": 7, "t": iso(6)},
    {"aid": 12, "seller": 3, "reserve": 9, "t": iso(8)},  # seller 3 joins at 25: another window
    {"aid": 13, "seller": 3, "reserve": 2, "t": iso(28)},
    {"aid": 14, "seller": 9, "reserve": 1, "t": "not a time"},
]


def test_a_left_join_in_fixed_windows_from_a_spec(tmp_path):
    """Persons (validated first) x auctions per 10 s window, as Nexmark's query 8: pairs in
    the same window, unmatched persons kept (left join), bad rows in the dead letters with
    their reason and position, counts reconciled, lineage from both sides."""
    spec = join_spec(
        tmp_path,
        {
            "left": {"input": "people", "on": "id", "event_time": "t", "fields": ["id", "name"]},
            "right": {"input": "lots", "on": "seller", "event_time": "t", "prefix": "auction_"},
            "how": "left",
            "window": {"type": "fixed", "size": 10},
        },
        persons=PERSONS,
        auctions=AUCTIONS,
    )
    summary = run_spec(spec)
    assert summary.reconciled
    got = sorted(
        (r["id"], r["name"], r["auction_aid"], r["window_start"].second)
        for r in pq.read_table(tmp_path / "out").to_pylist()
    )
    assert got == [(1, "ann", 10, 0), (1, "ann", 11, 0), (2, "bob", None, 0), (3, "cy", 13, 20)]
    columns = pq.read_table(tmp_path / "out").column_names
    assert "auction_seller" in columns and "auction_t" in columns and "state" not in columns
    dead = [
        json.loads(line)
        for f in (tmp_path / "dead").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted((d["rule"], d["step"], d["offset"]) for d in dead) == [
        ("join_key", "new_auctions", 4),
        ("type:t", "lots", 5),
    ]
    node = {n.name: n for n in summary.nodes}["new_auctions"]
    # 4 persons + 4 auctions: one person without an id; auction 12 has no person in its window
    assert (node.rows_in, node.rows_out, node.rows_filtered, node.rows_dead_lettered) == (
        8,
        6,
        1,
        1,
    )
    fields = sink_lineage(
        spec,
        {"persons": ["id", "name", "state", "t"], "auctions": ["aid", "seller", "reserve", "t"]},
    )["out"]
    assert fields.fields["auction_reserve"][0].source == "auctions"
    assert fields.fields["name"][0].source == "persons"
    assert fields.fields["window_start"] == []
    joins = {(o.source, o.field) for o in fields.dataset if o.steps[-1].subtype == "JOIN"}
    assert joins == {("persons", "id"), ("auctions", "seller")}


# --------------------------------------------------------------------------- the transform


def table(**columns: list) -> pa.Table:
    return pa.table(columns)


def ms(seconds: float) -> int:
    return int(seconds * 1000)


def pairs(columns: tuple[str, ...]):  # noqa: ANN201
    return lambda t: [tuple(row.get(c) for c in columns) for row in t.to_pylist()]


def counters(result: Any) -> dict[str, int]:
    query = result.metrics().query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    counts: dict[str, int] = {}
    for c in query["counters"]:
        counts[c.key.metric.name] = counts.get(c.key.metric.name, 0) + c.committed
    return counts


_SEEN: dict[str, list] = {}


def _seen(value: Any, kind: str) -> None:
    _SEEN.setdefault(kind, []).append(value)  # FnApiRunner runs in this process


def run_join(
    left: list[pa.Table], right: list[pa.Table], join: Join, columns: tuple[str, ...]
) -> tuple[list[tuple], list[tuple], dict[str, int]]:
    """Run ``join`` on the FnApiRunner; return its rows (``columns``), dead letters (rule,
    offset) and counters."""
    _SEEN.clear()
    p = TestPipeline(runner="FnApiRunner")
    lc = p | "L" >> beam.Create(left).with_output_types(pa.Table)
    rc = p | "R" >> beam.Create(right).with_output_types(pa.Table)
    out = {"left": lc, "right": rc} | join
    rows = out.rows | "Rows" >> beam.FlatMap(pairs(columns))
    dead = out.dead_letters | "Dead" >> beam.FlatMap(
        lambda t: [(r["rule"], r["offset"]) for r in t.to_pylist()]
    )
    rows | "KeepRows" >> beam.Map(_seen, "rows")
    dead | "KeepDead" >> beam.Map(_seen, "dead")
    result = p.run()
    result.wait_until_finish()
    return (
        sorted(_SEEN.get("rows", []), key=repr),
        sorted(_SEEN.get("dead", []), key=repr),
        counters(result),
    )


def test_global_window_lifetimes_cover_winning_bids():
    """Auctions x bids as Nexmark's winning bids: a bid joins its auction while the auction
    is open (``keep_until: expires``), and only at or above the reserve (``where``); bids
    with no open auction are unmatched (here: rejected, so they are visible)."""
    auctions = with_positions(
        table(id=[1, 2], reserve=[10, 50], t=[ms(0), ms(5)], expires=[ms(100), ms(20)]),
        "auctions",
        [0, 1],
    )
    bids = with_positions(
        table(
            auction=[1, 1, 2, 2, 3],
            price=[9, 12, 60, 70, 5],
            t=[ms(10), ms(99), ms(19), ms(21), ms(1)],
        ),
        "bids",
        [0, 1, 2, 3, 4],
    )
    join = Join(
        left=JoinSide("auctions", ("id",), "t", keep_until="expires"),
        right=JoinSide("bids", ("auction",), "t", prefix="bid_"),
        where="bid_price >= reserve",
        on_unmatched="reject",
        step_name="winning",
        partitions=3,
    )
    rows, dead, counts = run_join([auctions], [bids], join, ("id", "bid_price"))
    assert rows == [(1, 12), (2, 60)]  # 9 < reserve 10; 70 came after auction 2 expired
    assert dead == [("unmatched", 0), ("unmatched", 3), ("unmatched", 4)]
    assert counts["winning/rows_in"] == 7
    assert counts["winning/rows_out"] == 4 and counts["winning/rows_dead_lettered"] == 3
    assert counts["winning/rows_joined"] == 2 and counts["winning/rule/unmatched"] == 3


def test_sliding_windows_pair_once_per_shared_window_and_left_rows_per_window():
    left = table(k=["a", "b"], t=[ms(4), ms(4)])
    right = table(k=["a"], t=[ms(6)])
    join = Join(
        left=JoinSide("l", ("k",), "t"),
        right=JoinSide("r", ("k",), "t"),
        how="left",
        window_fn=SlidingWindows(10, 5),
    )
    rows, _, counts = run_join([left], [right], join, ("k", "r_t", "window_start"))
    starts = [(k, t, w.second) for k, t, w in rows]
    # a@4 is in [-5,5) and [0,10); r@6 is in [0,10) and [5,15): they share [0,10)
    assert sorted(starts, key=repr) == sorted(
        [("a", None, 55), ("a", 6000, 0), ("b", None, 55), ("b", None, 0)], key=repr
    )
    assert counts["join/rows_in"] == 3 and counts["join/rows_out"] == 3


def test_sessions_merge_across_both_sides():
    """A left row and a right row 8 s apart share a session (gap 5) through a right row
    between them: sessions are merged per key over both inputs, as Beam's CoGroupByKey does."""
    left = table(k=[1, 1], t=[ms(0), ms(30)])
    right = table(k=[1, 1, 2], t=[ms(4), ms(8), ms(1)])
    join = Join(
        left=JoinSide("l", ("k",), "t"), right=JoinSide("r", ("k",), "t"), window_fn=Sessions(5)
    )
    rows, _, counts = run_join([left], [right], join, ("t", "r_t", "window_end"))
    assert [(t, rt, w.second) for t, rt, w in rows] == [(0, 4000, 13), (0, 8000, 13)]
    assert counts["join/rows_filtered"] == 2  # the left row at 30 and k=2


def test_keys_of_different_names_and_types_meet():
    left = table(id=pa.array([1, 2], pa.int32()), v=["x", "y"])
    right = table(person=pa.array([2, 2], pa.int64()), v=["p", "q"])
    join = Join(left=JoinSide("l", ("id",)), right=JoinSide("r", ("person",)))
    rows, _, _ = run_join([left], [right], join, ("id", "v", "r_v"))
    assert rows == [(2, "y", "p"), (2, "y", "q")]


@pytest.mark.parametrize("right", [[], "empty table"], ids=["no-batch", "empty-batch"])
def test_an_empty_side_joins_nothing_and_counts_every_row(right):
    """A right input with no rows, or no batch at all (a filter before the join dropped
    everything): a left join still emits every left row, with the listed right fields null."""
    left = table(k=[1, 2], t=[0, 1])
    join = Join(left=JoinSide("l", ("k",)), right=JoinSide("r", ("k",), fields=("v",)), how="left")
    batches = [table(k=[3], v=["x"]).slice(0, 0)] if right else []
    rows, _, counts = run_join([left], batches, join, ("k", "v"))
    assert rows == [(1, None), (2, None)]
    assert counts["join/rows_in"] == 2 and counts["join/rows_out"] == 2


# --------------------------------------------------------------------------- spec errors


def spec_problems(tmp_path: Any, step: dict) -> list[str]:
    with pytest.raises(SpecError) as caught:
        join_spec(tmp_path, step, persons=PERSONS, auctions=AUCTIONS)
    return caught.value.problems


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            {"left": "people", "right": "lots", "on": "id", "how": "right"},
            "swap 'left' and 'right'",
        ),
        ({"left": "people", "right": "lots", "on": "id", "how": "full"}, "only inner and left"),
        ({"left": "people", "right": "lots"}, "give the key field(s): 'on', or 'left.on'"),
        (
            {"left": "people", "right": {"input": "lots", "on": ["seller", "aid"]}, "on": "id"},
            "need as many fields each",
        ),
        (
            {
                "left": {"input": "people", "keep": 60},
                "right": "lots",
                "on": "id",
                "window": {"type": "fixed", "size": 10},
            },
            "apply to the global window",
        ),
        ({"left": "people", "right": "lots", "on": "id", "input": "people"}, "remove 'input'"),
        ({"left": "peeple", "right": "lots", "on": "id"}, "did you mean 'people'?"),
        (
            {
                "left": {"input": "people", "keep": 1, "keep_until": "t"},
                "right": "lots",
                "on": "id",
            },
            "not both",
        ),
        (
            {"left": {"input": "people", "evnt_time": "t"}, "right": "lots", "on": "id"},
            "did you mean 'event_time'?",
        ),
    ],
)
def test_spec_errors_name_the_path_and_the_fix(tmp_path, step, expected):
    problems = spec_problems(tmp_path, step)
    assert any(expected in p and p.startswith("steps[2]") for p in problems), problems


def test_a_window_without_a_size_fails_before_running(tmp_path):
    spec = join_spec(
        tmp_path,
        {"left": "people", "right": "lots", "on": "id", "window": {"type": "fixed"}},
        persons=PERSONS,
        auctions=AUCTIONS,
    )
    with pytest.raises(SpecError) as caught:
        run_spec(spec)
    assert any(
        "steps[2].window: fixed windows need a positive 'size'" in p for p in caught.value.problems
    )


def test_validate_names_unknown_fields_of_either_side_and_of_where(tmp_path, capsys):
    """Fields are checked against each side's own schema (and ``where`` against the joined
    row's columns) before anything runs."""
    import pyarrow.parquet as pq_write

    from pipelines.cli import main

    pq_write.write_table(table(id=[1], name=["a"], t=[5]), tmp_path / "p.parquet")
    pq_write.write_table(table(seller=[1], reserve=[3], t=[6]), tmp_path / "a.parquet")
    (tmp_path / "spec.yaml").write_text(
        f"""name: jv
sources:
  - {{name: persons, type: file, path: {tmp_path / "p.parquet"}}}
  - {{name: auctions, type: file, path: {tmp_path / "a.parquet"}}}
steps:
  - name: j
    type: join
    left: {{input: persons, on: idd, event_time: t}}
    right: {{input: auctions, on: seller, event_time: tt, fields: [reserve]}}
    where: "reserve > 2 and nme is not null"
sinks:
  - {{name: out, type: file, path: {tmp_path / "out"}}}
dead_letter: {{path: {tmp_path / "dead"}}}
"""
    )
    assert main(["validate", str(tmp_path / "spec.yaml")]) != 0
    err = capsys.readouterr().err
    assert "steps[0].left.on: unknown field 'idd'; did you mean 'id'?" in err
    assert "steps[0].right.event_time: unknown field 'tt'; did you mean 't'?" in err
    assert "steps[0].where: unknown field 'nme'; did you mean 'name'?" in err
    assert "unknown field 'reserve'" not in err  # a column of the joined row
