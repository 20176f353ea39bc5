"""The command line a user types: validate, schema, templates, and the Python API around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.loading import resolve_parameters
from pipelines.run import run_spec
from templates import get_template

ROOT = Path(__file__).resolve().parents[1]


def write_spec(tmp_path: Path, **changes) -> Path:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "email": "a@x.com"}\n{"id": 2, "email": null}\n')
    spec = {
        "name": "cli_test",
        "sources": [{"name": "rows", "type": "file", "path": str(src)}],
        "steps": [
            {"name": "check", "type": "validate", "rules": [{"rule": "not_null", "field": "email"}]}
        ],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "dead")},
        "run": {"error_threshold": 0.6},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        **changes,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_validate_ok_and_deep(tmp_path, capsys):
    path = write_spec(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--deep"]) == 0
    assert "valid (1 source(s), 1 step(s), 1 sink(s))" in capsys.readouterr().out


def test_validate_reports_path_and_hint(tmp_path, capsys):
    path = write_spec(
        tmp_path,
        steps=[{"name": "check", "type": "validate", "rules": [{"rule": "not_nul", "field": "x"}]}],
    )
    assert main(["validate", str(path)]) == 2
    assert (
        "steps[0].rules[0]: unknown kind 'not_nul'; did you mean 'not_null'?"
        in capsys.readouterr().err
    )


def test_deep_validation_finds_missing_files(tmp_path, capsys):
    path = write_spec(
        tmp_path, sources=[{"name": "rows", "type": "file", "path": str(tmp_path / "none-*.csv")}]
    )
    assert main(["validate", str(path), "--deep"]) == 2
    assert "sources[0].path: no file matches" in capsys.readouterr().err


def test_run_spec_file_writes_summary_json(tmp_path):
    path = write_spec(tmp_path)
    assert main(["run", str(path), "-q", "--summary-json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert (
        summary["rows_read"] == 2 and summary["rows_dead_lettered"] == 1 and summary["reconciled"]
    )


def test_schema_command_prints_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "PipelineSpec" in json.dumps(schema) or schema["title"] == "beamwright pipeline spec"


def test_templates_show_lists_parameters(capsys):
    assert main(["templates", "show", "data_processing"]) == 0
    out = capsys.readouterr().out
    for name in (
        "data_sources",
        "processing_stages",
        "output_destinations",
        "choices: clean, validate, transform, enrich, mask",
    ):
        assert name in out
    assert main(["templates", "show", "data_procesing"]) == 2


def test_template_spec_customised_from_python(tmp_path):
    t = get_template("data_processing")
    values = resolve_parameters(
        t.parameters,
        {
            "processing_stages": "validate,transform",
            "output_destinations": "warehouse",
            "output_dir": str(tmp_path),
        },
    )
    spec = t.expand(values).add_step(
        {"name": "big_orders", "type": "filter", "where": "total > 500"}
    )
    spec.sink("warehouse").path = str(tmp_path / "big")
    summary = run_spec(spec)
    big = summary.node("big_orders")
    assert big.rows_filtered > 0 and big.rows_out > 0
    assert summary.node("warehouse").rows_out == big.rows_out


@pytest.mark.slow
def test_great_expectations_suite_rejects_rows_in_a_pipeline(tmp_path):
    src = tmp_path / "orders.jsonl"
    src.write_text(
        "".join(
            json.dumps({"order_id": f"O{i}", "amount": -5 if i == 3 else 10, "email": "a@b.co"})
            + "\n"
            for i in range(6)
        )
    )
    suite = {
        "name": "orders",
        "expectations": [
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "amount", "min_value": 0},
            },
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email"}},
        ],
    }
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    path = write_spec(
        tmp_path,
        sources=[{"name": "rows", "type": "file", "path": str(src)}],
        steps=[
            {
                "name": "check",
                "type": "validate",
                "fields": {"amount": {"type": "float64"}},
                "expectations": str(tmp_path / "suite.json"),
            }
        ],
    )
    from pipelines.loading import load_spec

    summary = run_spec(load_spec(path))
    assert summary.node("check").rows_dead_lettered == 1
    letters = [
        json.loads(line)
        for f in (tmp_path / "dead").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert letters[0]["rule"] == "gx/expect_column_values_to_be_between"
    assert letters[0]["offset"] == 4


def test_deep_validation_checks_mask_options(tmp_path, capsys):
    bad = [
        {
            "name": "m",
            "type": "mask",
            "fields": [{"field": "id", "strategy": "bucket", "boundaries": [10, 5]}],
        }
    ]
    path = write_spec(tmp_path, steps=bad)
    assert main(["validate", str(path), "--deep"]) == 2
    assert "steps[0].fields: " in capsys.readouterr().err
