"""Streaming, proved the way Beam's own tests do: a TestStream of Arrow batches through a whole
spec (validate → window → windowed file sinks, a per-window report, dead letters) on the
BundleBasedDirectRunner, the only local runner that honours a TestStream's watermark and
processing-time advances.

What must hold (issue 11): panes fire on watermark and processing-time advances; late rows
reach the dead letters; every pane's files appear exactly once and complete, under names made
of (window, pane index, shard); the counts reconcile per pane; a replay of the same elements
rewrites the same names with the same bytes.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.transforms.window import TimestampedValue

from connectors.arrow_coder import ArrowTableCoder
from connectors.committer import MANIFEST
from connectors.panes import pane_table, window_label
from connectors.records import with_positions
from pipelines.build import build_pipeline
from pipelines.loading import spec_from_data
from tests.plugin_kinds.teststream import STREAMS

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def orders(rows: list[tuple[str, str, float, int]], first_offset: int) -> pa.Table:
    """(order id, country, amount, event second after T0) rows as a Kafka-like Arrow batch."""
    table = pa.table(
        {
            "order_id": [r[0] for r in rows],
            "country": [r[1] for r in rows],
            "amount": pa.array([r[2] for r in rows], pa.float64()),
            "ts": pa.array([T0 + dt.timedelta(seconds=r[3]) for r in rows], pa.timestamp("us", "UTC")),
        }
    )
    return with_positions(table, "orders/0", range(first_offset, first_offset + len(rows)))


def at(second: float) -> float:
    return T0.timestamp() + second


def order_stream() -> TestStream:
    """Window [0, 60): three rows (one invalid), then window [60, 120) and a late row for
    [0, 60) after the watermark passed it, with processing-time advances in between."""
    first = orders([("a", "NL", 5.0, 10), ("b", "NL", 7.0, 50), ("c", "DE", -1.0, 20)], 0)
    second = orders([("d", "DE", 2.0, 70), ("e", "NL", 1.0, 15), ("f", "NL", 4.0, 100)], 3)
    return (
        TestStream(coder=ArrowTableCoder())
        .advance_watermark_to(at(0))
        .add_elements([TimestampedValue(first, at(50))])
        .advance_processing_time(61)
        .advance_watermark_to(at(65))
        .add_elements([TimestampedValue(second, at(100))])
        .advance_processing_time(61)
        .advance_watermark_to_infinity()
    )


def spec_for(out: Path, stream: str) -> object:
    return spec_from_data(
        {
            "name": "orders_stream",
            "plugins": ["tests.plugin_kinds.teststream"],
            "sources": [{"name": "orders", "type": "teststream", "stream": stream}],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {
                        "order_id": {"type": "string", "required": True},
                        "country": {"type": "string"},
                        "amount": {"type": "float64"},
                        "ts": {"type": "timestamp"},
                    },
                    "rules": [{"rule": "min", "field": "amount", "min": 0}],
                },
                {
                    "name": "per_minute",
                    "type": "window",
                    "input": "check",
                    "event_time": "ts",
                    "window": {"type": "fixed", "size": 60},
                    "group_by": ["country"],
                    "metrics": {"orders": "count", "revenue": "sum(amount)"},
                },
            ],
            "sinks": [
                {"name": "valid", "type": "file", "input": "check", "path": str(out / "valid"),
                 "format": "jsonl", "keep_positions": True},
                {"name": "revenue", "type": "file", "input": "per_minute",
                 "path": str(out / "revenue")},
                {"name": "summary", "type": "report", "input": "per_minute",
                 "path": str(out / "reports" / "revenue.json"), "group_by": ["country"],
                 "metrics": {"orders": "sum(orders)"}},
            ],
            "dead_letter": {"path": str(out / "dead")},
            "run": {"triggering_frequency": 60},
        }
    )


def run_streaming(out: Path) -> None:
    STREAMS["orders"] = order_stream()
    pipeline = beam.Pipeline(
        runner="BundleBasedDirectRunner", options=PipelineOptions(streaming=True)
    )
    build_pipeline(spec_for(out, "orders"), pipeline, "run-1")
    pipeline.run().wait_until_finish()


def data_files(directory: Path) -> dict[str, bytes]:
    """Every published file under ``directory`` (relative name -> bytes), manifests aside.
    Dead letters are stamped with the time of rejection, which a replay cannot repeat: that
    one field is left out of their content."""
    return {
        str(p.relative_to(directory)): _content(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.startswith((".", "_"))
    }


def _content(path: Path) -> bytes:
    if path.parts[-3] != "dead":
        return path.read_bytes()
    rows = [json.loads(line) for line in path.open()]
    return json.dumps([{k: v for k, v in r.items() if k != "timestamp"} for r in rows]).encode()


def manifest_files(window_dir: Path) -> list[str]:
    return json.loads((window_dir / MANIFEST).read_text())["files"]


def jsonl_rows(directory: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(directory.rglob("*.jsonl")) for line in p.open()]


MINUTE_0 = "20260101T000000Z_20260101T000100Z"
MINUTE_1 = "20260101T000100Z_20260101T000200Z"


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stream")
    run_streaming(out)
    return out


def test_event_time_windows_are_written_per_window_and_pane(streamed):
    revenue = streamed / "revenue"
    files = sorted(data_files(revenue))
    assert files == [
        f"{MINUTE_0}/pane-00000-part-00000-of-00001.parquet",
        f"{MINUTE_1}/pane-00000-part-00000-of-00001.parquet",
    ]
    first = pq.read_table(revenue / files[0]).to_pylist()
    assert sorted((r["country"], r["orders"], r["revenue"], r["pane_timing"]) for r in first) == [
        ("NL", 2, 12.0, "ON_TIME")
    ]
    second = pq.read_table(revenue / files[1]).to_pylist()
    assert sorted((r["country"], r["orders"], r["revenue"]) for r in second) == [
        ("DE", 1, 2.0),
        ("NL", 1, 4.0),
    ]
    for window in (MINUTE_0, MINUTE_1):  # each pane published with its window's manifest
        assert manifest_files(revenue / window) == ["pane-00000-part-00000-of-00001.parquet"]
        assert not [p for p in (revenue / window).iterdir() if p.name.startswith(".beamwright-tmp")]


def test_rows_in_no_window_are_written_in_processing_time_panes(streamed):
    valid = streamed / "valid"
    files = sorted(data_files(valid))
    assert files == [
        "global/pane-00000-part-00000-of-00001.jsonl",
        "global/pane-00001-part-00000-of-00001.jsonl",
    ]
    assert manifest_files(valid / "global") == [Path(f).name for f in files]
    panes = [[json.loads(x)["order_id"] for x in (valid / f).open()] for f in files]
    assert panes == [["a", "b"], ["d", "e", "f"]]  # in source-position order


def test_late_and_invalid_rows_reach_the_dead_letters_and_counts_reconcile(streamed):
    dead = jsonl_rows(streamed / "dead")
    assert sorted((d["rule"], d["offset"]) for d in dead) == [("late", 4), ("min:amount", 2)]
    late = next(d for d in dead if d["rule"] == "late")
    assert "window [2026-01-01T00:00:00Z, 2026-01-01T00:01:00Z)" in late["errorMessage"]
    read = 6
    valid = jsonl_rows(streamed / "valid")
    assert read == len(valid) + sum(d["step"] == "check" for d in dead)
    aggregated = sum(
        r["orders"] for f in (streamed / "revenue").rglob("*.parquet") for r in pq.read_table(f).to_pylist()
    )
    assert aggregated == len(valid) - sum(d["rule"] == "late" for d in dead)
    # and per pane: each processing-time pane of the validate step's input is whole
    for pane, (ids, rejected) in enumerate([(["a", "b"], [2]), (["d", "e", "f"], [])]):
        name = f"global/pane-{pane:05d}-part-00000-of-00001.jsonl"
        assert [json.loads(x)["order_id"] for x in (streamed / "valid" / name).open()] == ids
        letters = [json.loads(x) for x in (streamed / "dead" / name).open()]
        assert [d["offset"] for d in letters if d["step"] == "check"] == rejected
        assert len(ids) + len(rejected) == 3  # each pane's batch: three orders read


def test_the_report_is_one_file_per_window_that_says_which(streamed):
    reports = sorted(p.name for p in (streamed / "reports").iterdir() if not p.name.startswith("."))
    assert reports == [f"revenue-{MINUTE_0}.json", f"revenue-{MINUTE_1}.json"]
    rows = json.loads((streamed / "reports" / reports[1]).read_text())
    assert {(r["country"], r["orders"]) for r in rows} == {("DE", 1), ("NL", 1)}
    assert {r["window_start"][:19] for r in rows} == {"2026-01-01 00:01:00"}
    assert all(r["pane_index"] == 0 for r in rows)


def test_a_replay_rewrites_the_same_names_with_the_same_bytes(streamed, tmp_path):
    run_streaming(tmp_path)
    for sink in ("valid", "revenue", "dead"):
        assert data_files(tmp_path / sink) == data_files(streamed / sink), sink


def test_a_replay_into_the_same_directories_leaves_each_pane_once(tmp_path):
    run_streaming(tmp_path)
    before = {sink: data_files(tmp_path / sink) for sink in ("valid", "revenue", "dead")}
    run_streaming(tmp_path)  # the runner retrying every bundle: at-least-once input
    for sink, files in before.items():
        assert data_files(tmp_path / sink) == files, sink
    assert manifest_files(tmp_path / "valid" / "global") == [Path(f).name for f in sorted(before["valid"])]


def test_pane_rows_do_not_depend_on_arrival_order():
    a = with_positions(pa.table({"x": [1, 2]}), "f", [5, 6])
    b = with_positions(pa.table({"x": [3]}), "f", [1])
    assert pane_table([a, b]).equals(pane_table([b, a]))
    plain = [pa.table({"x": [1]}), pa.table({"x": [2]})]
    assert pane_table(plain).equals(pane_table(plain[::-1]))
    assert pane_table([pa.table({"x": pa.array([], pa.int64())})]) is None


def test_window_labels_are_sortable_utc_bounds():
    from apache_beam.transforms.window import GlobalWindow, IntervalWindow

    assert window_label(GlobalWindow()) == "global"
    window = IntervalWindow(at(0), at(60))
    assert window_label(window) == MINUTE_0
    assert window_label(IntervalWindow(at(0.5), at(1))) == "20260101T000000.500000Z_20260101T000001Z"
