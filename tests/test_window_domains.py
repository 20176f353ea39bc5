"""Session windows end to end and processing-time windows, for the window and top steps.

Sessions: from a spec (merging across batches, the session bounds in the output, column
lineage through a top step), and the streaming variant of a spec with a top step over
sessions translated for Dataflow. Processing time: TestStream's ``advance_processing_time``
drives the panes (BundleBasedDirectRunner, see tests/test_windowing.py).
"""

from __future__ import annotations

import json

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.window import GlobalWindows, TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.records import with_positions
from pipelines.column_lineage import sink_lineage
from pipelines.loading import spec_from_data
from pipelines.run import run_spec
from pipelines.steps.window import windowing_arguments
from tests.stream_specs import BROKER
from tests.test_plan import NetworkGuard
from transforms.windowing import Window


def bids(bidders: list[int], first: int) -> pa.Table:
    table = pa.table({"bidder": pa.array(bidders, pa.int64())})
    return with_positions(table, "bids.jsonl", range(first, first + len(bidders)))


def per_bidder() -> dict:
    """Nexmark q12's step: bids counted per bidder in 10 s panes of processing time."""
    return {
        "name": "per_bidder",
        "type": "window",
        "time_domain": "processing",
        "window": {"type": "fixed", "size": 10},
        "group_by": ["bidder"],
        "metrics": {"bids": "count"},
    }


def test_processing_time_windows_fire_as_processing_time_advances():
    """q12's windowing: counts per bidder in panes cut by processing time, not event time
    (every row has the same event time here); the rest flushes when the input ends."""
    events = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(0)
        .add_elements([TimestampedValue(bids([1, 1, 2], 1), 0)])
        .advance_processing_time(11)  # 10 s of processing time since the first row: a pane
        .add_elements([TimestampedValue(bids([1, 2, 2], 4), 0)])
        .advance_processing_time(11)
        .add_elements([TimestampedValue(bids([3], 7), 0)])
        .advance_watermark_to_infinity()
    )
    spec = spec_from_data(
        {
            "name": "q12",
            "sources": [{"name": "bids", "type": "file", "path": "/nonexistent/bids.jsonl"}],
            "steps": [per_bidder()],
            "sinks": [{"name": "out", "type": "file", "path": "/nonexistent/out"}],
            "dead_letter": {"path": "/nonexistent/dead"},
        }
    )
    arguments = windowing_arguments(spec.steps[0])
    assert isinstance(arguments["window_fn"], GlobalWindows)
    assert str(arguments["trigger"]) == str(tr.Repeatedly(tr.AfterProcessingTime(10)))
    p = TestPipeline(runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True))
    out = p | events | Window(metrics={"bids": "count"}, **arguments)
    assert_that(
        out.rows
        | beam.FlatMap(
            lambda t: [
                (r["pane_index"], r["window_start"], r["bidder"], r["bids"]) for r in t.to_pylist()
            ]
        ),
        equal_to(
            [
                (0, None, 1, 2),
                (0, None, 2, 1),
                (1, None, 1, 1),
                (1, None, 2, 2),
                (0, None, 3, 1),  # pane indices count per key
            ]
        ),
    )
    p.run().wait_until_finish()


def test_processing_time_windows_are_fixed_windows_without_event_time():
    base = {
        "name": "w",
        "type": "window",
        "time_domain": "processing",
        "window": {"type": "fixed", "size": 10},
    }
    spec = spec_from_data(
        {
            "name": "q12",
            "sources": [{"name": "bids", "type": "file", "path": "/nonexistent/bids.jsonl"}],
            "steps": [
                {**base, "event_time": "at"},
                {**base, "name": "w2", "window": {"type": "sliding", "size": 10, "period": 5}},
                {**base, "name": "w3", "window": {"type": "fixed", "size": 2.5}},
            ],
            "sinks": [{"name": "out", "type": "file", "path": "/nonexistent/out"}],
            "dead_letter": {"path": "/nonexistent/dead"},
        }
    )
    for step, problem in zip(
        spec.steps, ["without event_time", "without event_time", "whole"], strict=True
    ):
        with pytest.raises(ValueError, match=problem):
            windowing_arguments(step)


def test_sessions_from_a_spec_merge_across_batches_and_rank_with_lineage(tmp_path):
    """q11's windowing (sessions per bidder, 10 s gap) through a spec: bids counted per
    session, and the highest bid of each session kept whole by a top step; the files are
    read in small batches so sessions merge across them."""
    src = tmp_path / "bids.jsonl"
    rows = [(1, 0, 5), (1, 4, 9), (2, 5, 1), (1, 13, 2), (2, 30, 8), (1, 40, 7), (2, 36, 3)]
    src.write_text(
        "".join(json.dumps({"bidder": b, "at": t * 1000, "price": p}) + "\n" for b, t, p in rows)
    )
    sessions = {"event_time": "at", "window": {"type": "session", "gap": 10}}
    spec = spec_from_data(
        {
            "name": "sessions",
            "sources": [{"name": "bids", "type": "file", "path": str(src)}],
            "run": {"batch_size": 2},
            "steps": [
                {
                    "name": "per_session",
                    "type": "window",
                    "input": "bids",
                    **sessions,
                    "group_by": ["bidder"],
                    "metrics": {"bids": "count", "spent": "sum(price)"},
                },
                {
                    "name": "best_bid",
                    "type": "top",
                    "input": "bids",
                    **sessions,
                    "group_by": ["bidder"],
                    "value": "price",
                },
            ],
            "sinks": [
                {
                    "name": "counts",
                    "type": "file",
                    "path": str(tmp_path / "counts"),
                    "input": "per_session",
                },
                {
                    "name": "best",
                    "type": "file",
                    "path": str(tmp_path / "best"),
                    "input": "best_bid",
                },
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"event_log": str(tmp_path / "events.jsonl.log")},
        }
    )
    summary = run_spec(spec)
    assert summary.reconciled

    def seconds(r: dict) -> tuple[int, int]:
        return (int(r["window_start"].timestamp()), int(r["window_end"].timestamp()))

    counts = sorted(
        (r["bidder"], *seconds(r), r["bids"], r["spent"])
        for r in pq.read_table(tmp_path / "counts").to_pylist()
    )
    # bidder 1: 0, 4, 13 -> [0, 23); 40 -> [40, 50); bidder 2: 5 -> [5, 15); 30, 36 -> [30, 46)
    assert counts == [(1, 0, 23, 3, 16), (1, 40, 50, 1, 7), (2, 5, 15, 1, 1), (2, 30, 46, 2, 11)]
    best = sorted(
        (r["bidder"], *seconds(r), r["price"], r["at"])
        for r in pq.read_table(tmp_path / "best").to_pylist()
    )
    assert best == [
        (1, 0, 23, 9, 4000),
        (1, 40, 50, 7, 40000),
        (2, 5, 15, 1, 5000),
        (2, 30, 46, 8, 30000),
    ]
    lineage = sink_lineage(spec, {"bids": ["bidder", "at", "price"]})["best"]
    assert lineage.fields["price"] and lineage.fields["price"][0].steps == ()  # kept whole
    subtypes = {o.steps[-1].subtype for o in lineage.dataset}
    assert {"SORT", "GROUP_BY", "WINDOW"} <= subtypes


@pytest.mark.slow
def test_streaming_top_over_sessions_translates_for_dataflow(tmp_path, monkeypatch):
    offline = NetworkGuard(monkeypatch)
    from pipelines.plan import translate

    spec = spec_from_data(
        {
            "name": "bidder_sessions",
            "sources": [
                {
                    "name": "bids",
                    "type": "kafka",
                    "bootstrap_servers": BROKER,
                    "topics": "bids",
                    "group_id": "beamwright",
                    "bounded": "end_offsets",
                }
            ],
            "steps": [
                {
                    "name": "typed",
                    "type": "validate",
                    "fields": {"bidder": {"type": "int64"}, "price": {"type": "int64"}},
                },
                {
                    "name": "best_bid",
                    "type": "top",
                    "window": {"type": "session", "gap": 10},
                    "trigger": {"type": "watermark", "early": {"type": "count", "count": 1}},
                    "allowed_lateness": 1,
                    "group_by": ["bidder"],
                    "value": "price",
                    "n": 2,
                    "ties": "first",
                },
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"type": "kafka", "bootstrap_servers": BROKER, "topic": "dead"},
            "lineage": {"enabled": False},
        }
    )
    plan = translate(spec, "dataflow", streaming=True)
    assert offline.attempts == []
    assert plan["streaming"] is True and plan["job"]["type"] == "JOB_TYPE_STREAMING"
    steps = [st for st in plan["steps"] if st["name"].split("/")[0] == "best_bid"]
    assert any(st["name"].startswith("best_bid/LatenessGate") for st in steps)
    (group,) = [st for st in steps if st["kind"] == "GroupByKey"]
    assert group["windowing"] == ["pickled_python:v1"] and group["bounded"] is False


def test_validate_finds_top_and_input_window_fields_without_running(tmp_path, capsys):
    from tests.test_validation_without_running import validate, write_spec

    cases = [
        ([{"name": "t", "type": "top", "value": "amont * 2"}], "steps[0].value: unknown field"),
        ([{"name": "t", "type": "top", "value": "amount", "group_by": ["statuss"]}],
         "steps[0].group_by[0]: unknown field"),
        ([{"name": "t", "type": "top", "value": "amount", "event_time": "tss"}],
         "steps[0].event_time: unknown field"),
        # input windows need the window columns of an earlier window step
        ([{"name": "t", "type": "top", "value": "amount", "window": {"type": "input"}}],
         "steps[0].window: unknown field 'window_start'"),
    ]  # fmt: skip
    for steps, problem in cases:
        code, out = validate(capsys, write_spec(tmp_path, steps))
        assert code == 2 and problem in out, out
    after_window = [
        {"name": "w", "type": "window", "event_time": "ts", "group_by": ["status"]},
        {"name": "t", "type": "top", "value": "rows", "window": {"type": "input"}},
    ]
    code, out = validate(capsys, write_spec(tmp_path, after_window))
    assert code == 0, out


def test_processing_time_on_bounded_input_is_one_pane_with_every_row(tmp_path):
    """Beam's batch FnApiRunner cannot run a processing-time trigger (its batch trigger driver
    has no clock); the step runs what such a trigger means in batch: no processing time
    passes, so one pane at the end holds every row."""
    src = tmp_path / "bids.jsonl"
    src.write_text("".join(json.dumps({"bidder": b}) + "\n" for b in [1, 2, 1, 3, 1]))
    spec = spec_from_data(
        {
            "name": "q12_batch",
            "sources": [{"name": "bids", "type": "file", "path": str(src)}],
            "steps": [
                per_bidder(),
                {
                    "name": "early",  # an early processing-time firing: never in batch either
                    "type": "window",
                    "input": "bids",
                    "trigger": {
                        "type": "watermark",
                        "early": {"type": "processing_time", "delay": 5},
                    },
                    "window": {"type": "global"},
                    "metrics": {"bids": "count"},
                },
            ],
            "sinks": [
                {
                    "name": "out",
                    "type": "file",
                    "path": str(tmp_path / "out"),
                    "input": "per_bidder",
                },
                {"name": "all", "type": "file", "path": str(tmp_path / "all"), "input": "early"},
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"enabled": False},
        }
    )
    assert run_spec(spec).reconciled
    got = {
        r["bidder"]: (r["bids"], r["pane_index"])
        for r in pq.read_table(tmp_path / "out").to_pylist()
    }
    assert got == {1: (3, 0), 2: (1, 0), 3: (1, 0)}
    assert [r["bids"] for r in pq.read_table(tmp_path / "all").to_pylist()] == [5]


def test_batch_triggers_keep_all_but_processing_time_and_row_counts():
    from transforms.windowing import batch_trigger

    cases = [
        (
            tr.Repeatedly(tr.AfterAny(tr.AfterProcessingTime(10), tr.AfterWatermark())),
            "Repeatedly(AfterAny(Never, AfterWatermark()))",
        ),
        (
            tr.AfterWatermark(early=tr.AfterProcessingTime(5), late=tr.AfterCount(1)),
            "AfterWatermark(late=AfterCount(1))",
        ),
        (tr.AfterWatermark(early=tr.AfterCount(3)), "AfterWatermark()"),  # one pane: ON_TIME
        (tr.Repeatedly(tr.AfterAny(tr.AfterCount(1), tr.AfterWatermark())), None),
        (tr.DefaultTrigger(), "DefaultTrigger()"),
    ]
    for trigger, expected in cases:
        assert str(batch_trigger(trigger)) == (expected or str(trigger))


def test_a_count_trigger_in_batch_gives_each_session_one_pane_from_partials():
    """q11's trigger in batch: sessions per bidder with an early count; Beam's batch driver
    decides each window once with all its rows, so the counts are the same whether the early
    pane fires; the step feeds partials (not a row each) and emits one ON_TIME pane."""
    from transforms.windowing import Window, window_fn

    rows = [(1, 1), (1, 2), (1, 3), (1, 4), (2, 2), (1, 30)]
    tables = [
        with_positions(
            pa.table({"bidder": [b for b, _ in part], "at": [t * 1000 for _, t in part]}),
            "bids.jsonl",
            range(i, i + len(part)),
        )
        for i, part in ((1, rows[:3]), (4, rows[3:]))
    ]
    p = TestPipeline(runner="FnApiRunner")
    out = (
        p
        | beam.Create(tables).with_output_types(pa.Table)
        | Window(
            window_fn=window_fn("session", gap=10),
            key_fields=["bidder"],
            metrics={"bids": "count"},
            event_time_field="at",
            trigger=tr.AfterWatermark(early=tr.AfterCount(3)),
            allowed_lateness=1,
        )
    )
    assert_that(
        out.rows
        | beam.FlatMap(
            lambda t: [
                (r["bidder"], int(r["window_start"].timestamp()), r["pane_timing"], r["bids"])
                for r in t.to_pylist()
            ]
        ),
        equal_to([(1, 1, "ON_TIME", 4), (1, 30, "ON_TIME", 1), (2, 2, "ON_TIME", 1)]),
    )
    p.run().wait_until_finish()


def test_a_step_over_input_windows_keeps_them_open_as_long_as_their_step(tmp_path):
    from pipelines.checks import build_graph
    from pipelines.loading import SpecError

    (tmp_path / "b.jsonl").write_text('{"auction": 1, "at": 1000}\n')

    def spec(lateness: float):
        return spec_from_data(
            {
                "name": "q5",
                "sources": [{"name": "bids", "type": "file", "path": str(tmp_path / "b.jsonl")}],
                "steps": [
                    {
                        "name": "counts",
                        "type": "window",
                        "event_time": "at",
                        "window": {"type": "sliding", "size": 10, "period": 5},
                        "allowed_lateness": 5,
                        "group_by": ["auction"],
                    },
                    {
                        "name": "hottest",
                        "type": "top",
                        "window": {"type": "input"},
                        "value": "rows",
                        "allowed_lateness": lateness,
                    },
                ],
                "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
                "dead_letter": {"path": str(tmp_path / "dead")},
            }
        )

    with pytest.raises(SpecError) as caught:
        build_graph(spec(0), streaming=False)
    assert "steps[1].allowed_lateness: is 0s but 'counts'" in str(caught.value)
    assert "set allowed_lateness: 5" in str(caught.value)
    build_graph(spec(5), streaming=False)
