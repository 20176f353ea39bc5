"""The main job and the run lifecycle, end to end on the DirectRunner (FnApiRunner)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.cli import load_target
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import RunFailed, run_spec

ROOT = Path(__file__).resolve().parents[1]


def beamwright(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """One run of the main job through the CLI, shared by the assertions below."""
    cwd = tmp_path_factory.mktemp("main")
    done = beamwright("run", "data_processing", "--summary-json", "summary.json", cwd=cwd)
    return cwd, done


def test_main_job_completes_and_every_row_is_accounted_for(main_job):
    cwd, done = main_job
    assert done.returncode == 0, done.stderr
    summary = json.loads((cwd / "summary.json").read_text())
    assert summary["status"] == "COMPLETE"
    assert summary["reconciled"] is True
    assert summary["rows_read"] == 2205  # 2,000 orders + 5 undecodable lines + 200 customers
    nodes = {n["name"]: n for n in summary["nodes"]}
    written = nodes["warehouse"]["rows_out"]
    dead = summary["rows_dead_lettered"]
    orders_read = summary["rows_read"] - nodes["customers"]["rows_in"]
    assert written + dead + summary["rows_filtered"] == orders_read
    assert nodes["dead_letters"]["rows_out"] == dead
    assert "orders_1" in done.stdout and "rows/s" in done.stdout


def test_main_job_outputs_are_masked_and_enriched(main_job):
    cwd, _ = main_job
    out = cwd / "beamwright-output/data_processing"
    table = pq.read_table(out / "warehouse/orders")
    rows = table.to_pylist()
    assert len(rows) == 1924
    assert not {"_bw_source", "_bw_offset"} & set(table.column_names)
    assert all(r["email"].startswith("***@") for r in rows)
    assert all(re.fullmatch(r"\*{11,}\d{4}", r["card_number"]) for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{24}", r["customer_id"]) for r in rows)
    assert {r["lifetime_value"] for r in rows} <= {
        "<$0",
        "$0-$1K",
        "$1K-$10K",
        "$10K-$100K",
        "$100K-$1M",
        "$1M+",
    }
    assert {r["segment"] for r in rows} <= {"consumer", "small_business", "enterprise"}
    assert all(abs(r["total"] - r["amount"] * r["quantity"]) <= 0.005 + 1e-9 for r in rows)
    report = json.loads((out / "reports/orders_by_status.json").read_text())
    assert sum(r["orders"] for r in report) == len(rows)


def test_main_job_dead_letters_say_why_and_where(main_job):
    cwd, _ = main_job
    out = cwd / "beamwright-output/data_processing/alerts"
    letters = [
        json.loads(line)
        for f in sorted((out / "dead_letters").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    rules = {rule for d in letters for rule in d["rule"].split(",")}
    for expected in (
        "parse",
        "column_count",
        "type:amount",
        "between:amount",
        "regex:email",
        "in_set:status",
        "required:customer_id",
        "unique:order_id",
        "ships_after_order",
        "lookup:customer_id",
    ):
        assert expected in rules
    truncated = next(d for d in letters if d["rule"] == "parse" and d["offset"] == 18)
    assert truncated["source"].endswith("orders_2026_01.jsonl")
    assert truncated["errorMessage"].startswith("invalid JSON")
    wrong_columns = next(d for d in letters if d["rule"] == "column_count" and d["offset"] == 303)
    assert wrong_columns["errorMessage"] == "expected 11 columns, got 2"
    # the template declares GDPR and redacts classified fields in dead-letter payloads
    assert (
        wrong_columns["payloadString"].startswith("[REDACTED")
        and wrong_columns["payloadBytes"] is None
    )
    # the record as it arrived (JSON from the JSONL file, the CSV record from the CSV file),
    # with the classified fields redacted
    typed = [d for d in letters if d["rule"] == "type:amount"]
    from_jsonl = next(d for d in typed if d["source"].endswith(".jsonl"))
    payload = json.loads(from_jsonl["payloadString"])
    assert payload["amount"] == "n/a" and payload["email"] == "[REDACTED]"
    assert payload["card_number"] == "[REDACTED]" and payload["status"] != "[REDACTED]"
    from_csv = next(d for d in typed if d["source"].endswith(".csv"))
    fields = from_csv["payloadString"].split(",")
    assert (
        "n/a" in fields and fields.count("[REDACTED]") >= 2 and "@" not in from_csv["payloadString"]
    )
    assert all(d["run_id"] == letters[0]["run_id"] for d in letters)
    alerts = (out / "rejections_by_rule.csv").read_text()
    assert '"validate","type:amount"' in alerts


def test_main_job_emits_lineage(main_job):
    cwd, _ = main_job
    evs = events(cwd / "beamwright-output/data_processing/lineage/events.jsonl")
    assert [e["eventType"] for e in evs] == ["START", "COMPLETE"]
    assert evs[0]["run"]["runId"] == evs[1]["run"]["runId"]
    inputs = {i["name"].rsplit("/", 1)[-1] for i in evs[0]["inputs"]}
    assert inputs == {
        "orders_2026_01.jsonl",
        "orders_2026_02.csv",
        "orders_2026_03.parquet",
        "orders_2026_04.avro",
        "customers.csv",
    }
    assert all(i["namespace"] == "file" for i in evs[0]["inputs"])


def test_pseudonym_key_never_appears_in_outputs(main_job):
    cwd, _ = main_job
    key = (cwd / "beamwright-output/secrets/pseudonym.key").read_text().strip()
    assert len(key) == 64
    for path in (cwd / "beamwright-output/data_processing").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path


def test_bad_parameter_fails_before_running(tmp_path):
    done = beamwright(
        "run", "data_processing", "-p", "processing_stages=validate,maks", cwd=tmp_path
    )
    assert done.returncode == 2
    assert (
        "parameters.processing_stages: 'maks' is not allowed; did you mean 'mask'?" in done.stderr
    )
    assert not (tmp_path / "beamwright-output").exists()


def template_spec(tmp_path: Path, **params: str):
    return load_target("data_processing", {"output_dir": str(tmp_path / "out"), **params})


def test_error_threshold_fails_the_run_and_lineage_says_so(tmp_path):
    spec = template_spec(tmp_path, error_threshold="0.01", processing_stages="validate")
    with pytest.raises(RunFailed) as info:
        run_spec(spec)
    assert "above the error threshold of 1.00%" in str(info.value)
    assert info.value.summary.status == "FAILED"
    evs = events(tmp_path / "out/lineage/events.jsonl")
    assert evs[-1]["eventType"] == "FAIL"
    assert "error threshold" in evs[-1]["run"]["facets"]["errorMessage"]["message"]


def test_corrupt_file_fails_the_run_naming_the_file(tmp_path):
    good = ROOT / "templates/sample_data/orders_2026_03.parquet"
    bad = tmp_path / "truncated.parquet"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    spec = template_spec(tmp_path, data_sources=str(bad), processing_stages="validate")
    with pytest.raises((RunFailed, SpecError)) as info:
        run_spec(spec)
    assert str(bad) in str(info.value)


def test_missing_input_fails_before_running(tmp_path):
    spec = template_spec(tmp_path, data_sources=str(tmp_path / "nothing-*.jsonl"))
    with pytest.raises(SpecError, match=r"sources\[0\].path: no file matches"):
        run_spec(spec)


def test_spec_file_with_filter_report_and_csv(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,kind,amount\n1,a,10\n2,b,oops\n3,a,5\n4,b,7\n\n5,a\n")
    spec = spec_from_data(
        {
            "name": "small",
            "sources": [{"name": "rows", "type": "file", "path": str(src)}],
            "steps": [
                {
                    "name": "typed",
                    "type": "validate",
                    "fields": {"id": {"type": "int64"}, "amount": {"type": "float64"}},
                },
                {"name": "only_a", "type": "filter", "where": "kind == 'a'"},
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"},
                {
                    "name": "sums",
                    "type": "report",
                    "path": str(tmp_path / "sums.csv"),
                    "group_by": ["kind"],
                    "metrics": {"n": "count", "total": "sum(amount)"},
                },
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 0.5},
            "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        }
    )
    summary = run_spec(spec)
    assert summary.node("rows").rows_in == 5 and summary.node("rows").rows_dead_lettered == 1
    assert summary.node("typed").rows_dead_lettered == 1
    assert summary.node("only_a").rows_filtered == 1
    out = [
        json.loads(line)
        for f in (tmp_path / "out").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(r["id"] for r in out) == [1, 3]
    assert (tmp_path / "sums.csv").read_text().splitlines() == ['"kind","n","total"', '"a",2,15']
