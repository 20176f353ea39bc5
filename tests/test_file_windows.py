"""The file sink's ``window`` and ``shards`` (Nexmark's query 10: every event, per fixed window,
in a fixed number of shard files, each window's files listed in an index).

What must hold: each fixed event-time window's rows in a directory of their own, in at most
``shards`` files named ``part-NNNNN-of-<shards>``, row i of the rows' source order in shard
i mod shards; the manifest lists every window's files; rows without an event time are dead
letters (counted, the run reconciles); an overwrite replaces the sink's own earlier windows and
a failed run leaves them as they were; on unbounded input each window directory gets its panes
and its own manifest, and a row arriving long after its window still lands there.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.committer import MANIFEST
from connectors.records import with_positions
from pipelines.build import build_pipeline
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import RunFailed, run_spec
from tests.plugin_kinds.teststream import STREAMS

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
W0 = "20260101T000000Z_20260101T000010Z"
W1 = "20260101T000010Z_20260101T000020Z"
W2 = "20260101T000020Z_20260101T000030Z"


def _write_events(path: Path, seconds: list[float | None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        json.dumps({"id": i, "ts": None if s is None else T0_MS + int(s * 1000)})
        for i, s in enumerate(seconds)
    ]
    path.write_text("\n".join(lines) + "\n")


def _spec(tmp_path: Path, sink: dict | None = None, threshold: float = 0.5) -> dict:
    return {
        "name": "windowed",
        "sources": [
            {
                "name": "events",
                "type": "file",
                "path": str(tmp_path / "in.jsonl"),
                "format": "jsonl",
            }
        ],
        "sinks": [
            {
                "name": "out",
                "type": "file",
                "path": str(tmp_path / "out"),
                "format": "jsonl",
                "window": {"event_time": "ts", "size": 10},
                "shards": 3,
                **(sink or {}),
            }
        ],
        "dead_letter": {"path": str(tmp_path / "dead")},
        "run": {"error_threshold": threshold},
        "lineage": {"enabled": False},
    }


def _files(directory: Path) -> dict[str, list[int]]:
    """``<window>/<file>`` -> the ids in it, in file order (manifests and staging aside)."""
    return {
        str(p.relative_to(directory)): [json.loads(x)["id"] for x in p.open()]
        for p in sorted(directory.glob("*/*.jsonl"))
    }


def test_bounded_rows_go_to_one_directory_per_window_in_round_robin_shards(tmp_path):
    # ids 0-6 in [0, 10), 7-8 in [10, 20), 9 in [20, 30) and id 10 with no event time
    _write_events(tmp_path / "in.jsonl", [0, 1, 2, 3, 4, 5, 9.999, 10, 19, 25, None])
    summary = run_spec(spec_from_data(_spec(tmp_path)))
    assert _files(tmp_path / "out") == {
        f"{W0}/part-00000-of-00003.jsonl": [0, 3, 6],
        f"{W0}/part-00001-of-00003.jsonl": [1, 4],
        f"{W0}/part-00002-of-00003.jsonl": [2, 5],
        f"{W1}/part-00000-of-00003.jsonl": [7],
        f"{W1}/part-00001-of-00003.jsonl": [8],
        f"{W2}/part-00000-of-00003.jsonl": [9],  # no empty files for shards without rows
    }
    # the index of every window: the sink's manifest, its files grouped by directory
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert manifest["files"] == sorted(_files(tmp_path / "out"))
    dead = [json.loads(x) for p in (tmp_path / "dead").rglob("*.jsonl") for x in p.open()]
    assert [(d["step"], d["rule"], json.loads(d["payloadString"])["id"]) for d in dead] == [
        ("out", "event_time", 10)
    ]
    out = next(n for n in summary.nodes if n.name == "out")
    assert (out.rows_in, out.rows_out, out.rows_dead_lettered) == (11, 10, 1)
    assert all(n.reconciled for n in summary.nodes)


def test_an_overwrite_replaces_its_windows_and_a_failed_run_leaves_them(tmp_path):
    _write_events(tmp_path / "in.jsonl", [0, 1, 12, 25])
    run_spec(spec_from_data(_spec(tmp_path)))
    _write_events(tmp_path / "in.jsonl", [11, 13])  # window [0, 10) and [20, 30) are gone
    run_spec(spec_from_data(_spec(tmp_path)))
    assert _files(tmp_path / "out") == {
        f"{W1}/part-00000-of-00003.jsonl": [0],
        f"{W1}/part-00001-of-00003.jsonl": [1],
    }
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == [
        W1,
        MANIFEST,
    ]
    before = _files(tmp_path / "out")
    _write_events(tmp_path / "in.jsonl", [1, None, None])  # 2 of 3 dead: above the threshold
    with pytest.raises(RunFailed):
        run_spec(spec_from_data(_spec(tmp_path, threshold=0.1)))
    assert _files(tmp_path / "out") == before


@pytest.mark.parametrize("format_name", ["jsonl", "parquet"])
def test_shards_without_window_split_the_whole_output(tmp_path, format_name):
    """JSONL rows are encoded once and split (``encode_rows``), Parquet through its writer:
    the same shards; positions kept on request."""
    import pyarrow.parquet as pq

    _write_events(tmp_path / "in.jsonl", [0, 30, 60, 90, 120])
    sink = {"window": None, "shards": 2, "format": format_name, "keep_positions": True}
    run_spec(spec_from_data(_spec(tmp_path, sink)))
    written = {
        p.name: pq.read_table(p).to_pylist()
        if format_name == "parquet"
        else [json.loads(x) for x in p.open()]
        for p in (tmp_path / "out").glob("part-*")
    }
    assert {name: [r["id"] for r in rows] for name, rows in written.items()} == {
        f"part-00000-of-00002.{format_name}": [0, 2, 4],
        f"part-00001-of-00002.{format_name}": [1, 3],
    }
    assert [r["_bw_offset"] for r in written[f"part-00001-of-00002.{format_name}"]] == [2, 4]


@pytest.mark.parametrize(
    ("sink", "problem"),
    [
        ({"shards": 0}, "sinks[0].shards: Input should be greater than or equal to 1"),
        ({"window": {"size": 10}}, "sinks[0].window.event_time: required key is missing"),
        ({"window": {"event_time": "ts", "sise": 10}}, "did you mean 'size'"),
        ({"window": {"event_time": "ts", "size": 0}}, "sinks[0].window.size: Input should be"),
    ],
)
def test_invalid_windows_and_shards_fail_before_anything_runs(tmp_path, sink, problem):
    with pytest.raises(SpecError) as info:
        spec_from_data(_spec(tmp_path, sink))
    assert problem in str(info.value)


def _batch(ids: list[int], seconds: list[float], first_offset: int) -> pa.Table:
    table = pa.table(
        {
            "id": ids,
            "ts": pa.array(
                [
                    dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=s)
                    for s in seconds
                ],
                pa.timestamp("us", "UTC"),
            ),
        }
    )
    return with_positions(table, "events/0", range(first_offset, first_offset + len(ids)))


def test_unbounded_rows_are_published_per_window_directory_and_never_dropped_as_late(tmp_path):
    """Two processing-time panes; the second brings a row of window [0, 10) long after the
    watermark passed it: it is written in that window's directory, in pane 1, not dropped."""
    at = T0_MS / 1000
    STREAMS["windowed"] = (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(at)
        .add_elements([TimestampedValue(_batch([0, 1, 2, 3], [1, 2, 3, 12], 0), at + 12)])
        .advance_processing_time(61)
        .advance_watermark_to(at + 100)
        .add_elements([TimestampedValue(_batch([4], [5], 4), at + 100)])
        .advance_processing_time(61)
        .advance_watermark_to_infinity()
    )
    data = _spec(tmp_path)
    data["plugins"] = ["tests.plugin_kinds.teststream"]
    data["sources"] = [{"name": "events", "type": "teststream", "stream": "windowed"}]
    data["run"] = {"triggering_frequency": 60}
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    )
    build_pipeline(spec_from_data(data), pipeline, "run-1")
    pipeline.run().wait_until_finish()
    out = tmp_path / "out"
    assert _files(out) == {
        f"{W0}/pane-00000-part-00000-of-00003.jsonl": [0],
        f"{W0}/pane-00000-part-00001-of-00003.jsonl": [1],
        f"{W0}/pane-00000-part-00002-of-00003.jsonl": [2],
        f"{W0}/pane-00001-part-00000-of-00003.jsonl": [4],
        f"{W1}/pane-00000-part-00000-of-00003.jsonl": [3],
    }
    for window in (W0, W1):  # each window directory's manifest is its index
        listed = json.loads((out / window / MANIFEST).read_text())["files"]
        assert listed == sorted(Path(f).name for f in _files(out) if f.startswith(window))
