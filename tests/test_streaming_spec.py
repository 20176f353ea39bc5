"""The window and batch steps and store-backed secrets, from a spec, on the DirectRunner."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from pipelines.column_lineage import sink_lineage
from pipelines.loading import spec_from_data
from pipelines.run import run_spec


def test_window_step_aggregates_per_key_and_window(tmp_path):
    src = tmp_path / "events.jsonl"
    rows = [
        {"ts": "2026-01-01T00:00:10Z", "country": "NL", "amount": 5},
        {"ts": "2026-01-01T00:00:50Z", "country": "NL", "amount": 7},
        {"ts": "2026-01-01T00:01:05Z", "country": "NL", "amount": 1},
        {"ts": "2026-01-01T00:00:20Z", "country": "DE", "amount": 2},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = spec_from_data(
        {
            "name": "windows",
            "sources": [{"name": "events", "type": "file", "path": str(src)}],
            "steps": [
                {
                    "name": "typed",
                    "type": "validate",
                    "fields": {"ts": {"type": "timestamp"}, "amount": {"type": "float64"}},
                },
                {
                    "name": "per_minute",
                    "type": "window",
                    "event_time": "ts",
                    "window": {"type": "fixed", "size": 60},
                    "group_by": ["country"],
                    "metrics": {"orders": "count", "revenue": "sum(amount)"},
                },
                {"name": "batched", "type": "batch", "key": ["country"], "batch_size": 10},
            ],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out")}],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"event_log": str(tmp_path / "events.jsonl.log")},
        }
    )
    summary = run_spec(spec)
    assert summary.reconciled
    got = sorted(
        (r["country"], r["window_start"].minute, r["orders"], r["revenue"])
        for r in pq.read_table(tmp_path / "out").to_pylist()
    )
    assert got == [("DE", 0, 1, 2.0), ("NL", 0, 2, 12.0), ("NL", 1, 1, 1.0)]
    lineage = sink_lineage(spec, {"events": ["ts", "country", "amount"]})["out"]
    assert lineage.fields["revenue"][0].steps[-1].subtype == "AGGREGATION"
    assert lineage.fields["window_start"] == []


def test_mask_key_from_a_secret_store(tmp_path):
    from connectors.secrets import Secret
    from connectors.secrets.registry import open_store

    store = {"type": "file", "path": str(tmp_path / "store")}
    opened = open_store(store)
    opened.ensure("pseudonym")
    version = opened.add_version("pseudonym", Secret(b"k" * 32))
    opened.promote("pseudonym", version)
    src = tmp_path / "in.csv"
    src.write_text("id\nC1\nC2\n")
    spec = spec_from_data(
        {
            "name": "masked",
            "sources": [{"name": "rows", "type": "file", "path": str(src)}],
            "steps": [
                {
                    "name": "mask",
                    "type": "mask",
                    "fields": [
                        {
                            "field": "id",
                            "strategy": "pseudonymize",
                            "key": {"store": {**store, "name": "pseudonym"}},
                        }
                    ],
                }
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "lineage": {"enabled": False},
        }
    )
    run_spec(spec)
    out = [
        json.loads(line)["id"]
        for f in (tmp_path / "out").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert len(out) == 2 and "C1" not in out and len(set(out)) == 2
    for f in tmp_path.rglob("*"):
        if f.is_file() and "store" not in f.parts:
            assert b"k" * 32 not in f.read_bytes()
