"""Slowly changing lookups: a streaming job's ``lookup`` with ``refresh`` re-reads its
reference files, deduplicates the versions, joins with the newest, counts rows per version,
and lineage records the version used."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from connectors.metrics import REFERENCE_VERSION, latest_reference_version
from connectors.records import with_positions
from lineage.datasets import Dataset
from pipelines.lineage_run import LineageSession, reference_versions
from pipelines.loading import SpecError, spec_from_data
from pipelines.summary import NodeCounts
from tests import openlineage_schema
from transforms.lookup import Lookup
from transforms.reference_refresh import RefreshReference, read_version


def _write(path: Path, tier: str, mtime: float) -> None:
    path.write_text(f"customer_id,tier\nC1,{tier}\nC2,{tier}\n")
    os.utime(path, (mtime, mtime))


def test_a_version_is_the_content_and_sorts_by_age(tmp_path):
    ref = tmp_path / "customers.csv"
    _write(ref, "gold", 1_700_000_000)
    first, rejects = read_version([str(ref)], "csv", {}, 1000)
    assert rejects == 0 and first.table.column("tier").to_pylist() == ["gold", "gold"]
    assert first.version.startswith("20231114T221320Z-")
    again, _ = read_version([str(ref)], "csv", {}, 1000)
    assert again.version == first.version  # unchanged files: the same version
    _write(ref, "silver", 1_700_000_100)
    second, _ = read_version([str(ref)], "csv", {}, 1000)
    assert second.version != first.version and second.version > first.version
    assert (
        latest_reference_version(
            {
                REFERENCE_VERSION + first.version: 5,
                REFERENCE_VERSION + second.version: 3,
                "calls": 9,
            }
        )
        == second.version
    )


def test_the_lookup_joins_the_newest_version_read_deduplicated(tmp_path):
    """Reads every 0.2 s for 1.2 s while the file changes once: the lookup (which, on the
    local runner, starts after its side input's stage finished) joins with the new version,
    every row counted under it; the reading DoFn emitted two versions for ~6 reads."""
    ref = tmp_path / "customers.csv"
    _write(ref, "gold", time.time() - 60)
    changed = threading.Timer(0.5, lambda: _write(ref, "platinum", time.time()))
    orders = with_positions(pa.table({"customer_id": ["C1", "C2", "C3"]}), "orders", [1, 2, 3])
    pipeline = beam.Pipeline(runner=FnApiRunner())
    reference = pipeline | "Ref" >> RefreshReference(
        step="enrich", paths=[str(ref)], fmt="csv", refresh=0.2, stop_after=1.2
    )
    outputs = (
        pipeline
        | beam.Create([orders])
        | "enrich" >> Lookup(reference, refreshed=True, step_name="enrich", keys=["customer_id"])
    )
    joined = outputs.rows | beam.FlatMap(
        lambda t: [tuple(r.values()) for r in t.select(["customer_id", "tier"]).to_pylist()]
    )
    assert_that(joined, equal_to([("C1", "platinum"), ("C2", "platinum"), ("C3", None)]))
    changed.start()
    result = pipeline.run()
    result.wait_until_finish()
    changed.join()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("beamwright"))["counters"]
    }
    versions = {k: v for k, v in counters.items() if k.startswith("enrich/" + REFERENCE_VERSION)}
    assert list(versions.values()) == [3]  # every row joined with one version: the new one
    newest, _ = read_version([str(ref)], "csv", {}, 1000)
    assert list(versions) == [f"enrich/{REFERENCE_VERSION}{newest.version}"]
    assert counters["enrich/reference_reads"] >= 4


def _stream_spec(tmp_path: Path, lookup_source: dict) -> dict:
    return {
        "name": "orders_enriched_live",
        "sources": [
            {"name": "orders", "type": "kafka", "bootstrap_servers": "broker.invalid:9092",
             "topics": "orders", "group_id": "g", "bounded": None},
            lookup_source,
        ],
        "steps": [{"name": "enrich", "type": "lookup", "lookup": "customers",
                   "on": "customer_id", "refresh": 300}],
        "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
        "dead_letter": {"path": str(tmp_path / "dead")},
    }  # fmt: skip


def test_a_streaming_spec_with_refresh_translates_with_a_periodic_read(tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
    from pipelines.plan import translate

    ref = tmp_path / "customers.csv"
    _write(ref, "gold", time.time())
    spec = spec_from_data(
        _stream_spec(tmp_path, {"name": "customers", "type": "file", "path": str(ref)})
    )
    plan = translate(spec, "portable")
    names = [step["name"] for step in plan["steps"]]
    assert any(n.startswith("enrich/Refresh/Every") for n in names), names
    assert any(n.startswith("enrich/Refresh/Latest") for n in names), names
    assert plan["streaming"] is True


def test_refresh_needs_a_file_source(tmp_path):
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")
    from pipelines.plan import translate

    kafka_ref = {"name": "customers", "type": "kafka", "bootstrap_servers": "broker.invalid:9092",
                 "topics": "customers", "group_id": "g", "bounded": None}  # fmt: skip
    spec = spec_from_data(_stream_spec(tmp_path, kafka_ref))
    with pytest.raises(SpecError, match=r"steps\[0\]\.refresh: 'customers' is not a file source"):
        translate(spec, "portable")


def test_lineage_records_the_reference_version_used(tmp_path):
    ref = tmp_path / "customers.csv"
    _write(ref, "gold", time.time())
    spec = spec_from_data(
        _stream_spec(tmp_path, {"name": "customers", "type": "file", "path": str(ref)})
        | {"lineage": {"event_log": str(tmp_path / "events.jsonl")}}
    )
    step = NodeCounts(kind="step", name="enrich", rows_in=5, rows_out=5)
    step.stats = {REFERENCE_VERSION + "20260101T000000Z-aaaa": 2,
                  REFERENCE_VERSION + "20260102T000000Z-bbbb": 3}  # fmt: skip
    assert reference_versions(spec, [step]) == {"customers": "20260102T000000Z-bbbb"}
    events: list[dict] = []
    from lineage.emitter import EVENT_OBSERVERS

    EVENT_OBSERVERS.append(events.append)
    try:
        inputs = [Dataset("customers", "source", str(ref), "csv", [str(ref)])]
        session = LineageSession(
            spec,
            inputs,
            [],
            "01a23c1a-2945-7fbb-bcd5-7c051ecaa851",
            event_log=str(tmp_path / "e.jsonl"),
        )
        session.running([step])
        session.emitter.close()
    finally:
        EVENT_OBSERVERS.remove(events.append)
    running = events[-1]
    assert running["eventType"] == "RUNNING"
    facet = running["inputs"][0]["facets"]["version"]
    assert facet["datasetVersion"] == "20260102T000000Z-bbbb"
    assert openlineage_schema.event_problems(running) == []
