"""Table-level GX expectations judged once per run on the whole input (issue 16), end to end:
summary, lineage dataQualityAssertions, the GX result JSON, and a critical failure that
publishes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.loading import spec_from_data
from pipelines.run import RunFailed, run_spec

ROWS = 50  # 5 batches of 10: a per-batch row count would be 10


def write_orders(path: Path, rows: int = ROWS) -> Path:
    lines = [
        json.dumps(
            {
                "order_id": i,
                "email": f"u{i}@x.com" if i % 10 else None,
                "amount": float(i),
                "status": "new",
                "country": "DE",
            }
        )
        for i in range(rows)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_suite(path: Path, *, max_rows: int) -> Path:
    suite = {
        "name": "orders",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email"}},
            {"type": "expect_table_row_count_to_be_between",
             "kwargs": {"min_value": 20, "max_value": max_rows}},
            {"type": "expect_column_mean_to_be_between",
             "kwargs": {"column": "amount", "min_value": 20, "max_value": 30}},
            {"type": "expect_column_median_to_be_between",
             "kwargs": {"column": "amount", "min_value": 24, "max_value": 25}},
        ],
    }  # fmt: skip
    path.write_text(json.dumps(suite))
    return path


def run(tmp_path: Path, suite: Path, severity: str = "critical"):
    spec = spec_from_data(
        {
            "name": "gx-dataset",
            "sources": [{"name": "orders", "type": "file", "path": str(tmp_path / "in.jsonl")}],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {"order_id": {"type": "int64"}, "amount": {"type": "float64"}},
                    "expectations": str(suite),
                    "expectations_severity": severity,
                }
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 1.0, "batch_size": 10, "temp_location": str(tmp_path / "t")},
            "lineage": {"enabled": True, "event_log": str(tmp_path / "events.jsonl")},
        }
    )
    return run_spec(spec)


def test_table_expectations_are_judged_once_on_the_whole_input(tmp_path: Path) -> None:
    write_orders(tmp_path / "in.jsonl")
    summary = run(tmp_path, write_suite(tmp_path / "suite.json", max_rows=100))
    verdicts = {e["expectation_type"]: e for e in summary.data_quality}
    # 50 rows in 5 batches of 10: per batch the row count (10) would fail min_value=20
    assert verdicts["expect_table_row_count_to_be_between"]["observed_value"] == ROWS
    assert verdicts["expect_table_row_count_to_be_between"]["success"]
    assert verdicts["expect_column_mean_to_be_between"]["observed_value"] == pytest.approx(24.5)
    assert verdicts["expect_column_median_to_be_between"]["observed_value"] == 24.5
    assert all(e["success"] for e in summary.data_quality)
    assert summary.published
    assert summary.node("check").rows_dead_lettered == 5  # the null emails, row-level

    # lineage: the input dataset carries the dataset-level verdicts as assertions
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    facet = complete["inputs"][0]["inputFacets"]["dataQualityAssertions"]
    by_name = {a["assertion"]: a for a in facet["assertions"]}
    row_count = by_name["expect_table_row_count_to_be_between"]
    assert row_count["success"] and row_count["actual"] == str(ROWS)

    # the GX-compatible result JSON beside the output
    result = json.loads(Path(summary.data_quality_result).read_text())
    assert Path(summary.data_quality_result).parent == tmp_path
    assert result["suite_name"] == "orders"
    assert [r["expectation_config"]["type"] for r in result["results"]][:2] == [
        "expect_column_values_to_not_be_null",
        "expect_table_row_count_to_be_between",
    ]
    not_null = result["results"][0]
    assert not_null["result"]["unexpected_count"] == 5 and not not_null["success"]
    assert result["results"][1]["result"]["observed_value"] == ROWS
    assert result["statistics"]["evaluated_expectations"] == 4
    # GX itself reads it as its ExpectationSuiteValidationResult (what Data Docs render)
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResultSchema,
    )

    loaded = ExpectationSuiteValidationResultSchema().load(result)
    assert loaded.success is False and len(loaded.results) == 4
    assert loaded.results[1].result["observed_value"] == ROWS


def test_a_failing_critical_table_expectation_fails_the_run_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    write_orders(tmp_path / "in.jsonl")
    run(tmp_path, write_suite(tmp_path / "suite.json", max_rows=100))

    def files(folder: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()}

    before, dead_before = files("out"), files("dead")
    write_orders(tmp_path / "in.jsonl", rows=ROWS + 60)  # 110 rows: above max_value=100
    with pytest.raises(RunFailed) as failed:
        run(tmp_path, tmp_path / "suite.json")
    message = str(failed.value)
    assert "expect_table_row_count_to_be_between(min_value=20, max_value=100)" in message
    assert "observed 110" in message
    assert not failed.value.summary.published
    assert files("out") == before  # the previous outputs are untouched, byte for byte
    # the failed run's dead letters are kept beside the earlier ones (they say why), which
    # stay as they were; its GX result says what failed
    dead_after = files("dead")
    assert {k: dead_after[k] for k in dead_before if k.startswith("part-")} == {
        k: v for k, v in dead_before.items() if k.startswith("part-")
    }
    result = json.loads(Path(failed.value.summary.data_quality_result).read_text())
    assert not result["success"]


def test_a_warning_severity_reports_without_failing(tmp_path: Path) -> None:
    write_orders(tmp_path / "in.jsonl", rows=ROWS + 60)
    summary = run(tmp_path, write_suite(tmp_path / "suite.json", max_rows=100), "warning")
    verdict = next(
        e for e in summary.data_quality if e["expectation_type"].startswith("expect_table")
    )
    assert not verdict["success"] and verdict["severity"] == "warning"
    assert summary.published


def test_a_run_with_a_fully_compiled_suite_never_imports_great_expectations(
    tmp_path: Path,
) -> None:
    # the orders suite of the issue: six row-level expectations compiled to Arrow, row count
    # and mean judged on the dataset; GX itself is not needed (its import takes seconds)
    write_orders(tmp_path / "in.jsonl")
    suite = Path(__file__).parent / "data" / "gx" / "orders.json"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from tests.test_gx_dataset import run\n"
        f"summary = run(Path({str(tmp_path)!r}), Path({str(suite)!r}), 'warning')\n"
        "assert summary.published and len(summary.data_quality) == 2, summary\n"
        "assert summary.node('check').rows_dead_lettered > 0\n"
        "gx = sorted(m for m in sys.modules if m.startswith('great_expectations'))\n"
        "assert not gx, gx[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_suite_severity_takes_each_expectations_own_gx_severity(tmp_path: Path) -> None:
    write_orders(tmp_path / "in.jsonl", rows=ROWS + 60)  # the row count fails, the mean too
    suite = json.loads(write_suite(tmp_path / "suite.json", max_rows=100).read_text())
    suite["expectations"][1]["severity"] = "warning"  # row count: reported only
    suite["expectations"][2]["severity"] = "critical"  # mean (54.5, above 30): fails the run
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    with pytest.raises(RunFailed) as failed:
        run(tmp_path, tmp_path / "suite.json", "suite")
    message = str(failed.value)
    assert "expect_column_mean_to_be_between(amount, min_value=20, max_value=30)" in message
    assert "row_count" not in message
    severities = {e["expectation_type"]: e["severity"] for e in failed.value.summary.data_quality}
    assert severities["expect_table_row_count_to_be_between"] == "warning"
    assert severities["expect_column_median_to_be_between"] == "critical"  # GX's default
