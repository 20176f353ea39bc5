"""``beamwright validate`` finds broken expressions and missing fields without running
(issue 8, item 15); ``--deep`` reports build and type errors as path + problem + hint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from connectors.records import with_positions
from pipelines.checks import build_problem
from pipelines.cli import main
from transforms.aggregate import GroupAggregate, ReportFieldError
from transforms.expressions import ExpressionError, parse

ROOT = Path(__file__).resolve().parents[1]


def write_spec(tmp_path: Path, steps: list[dict], sinks: list[dict] | None = None, **more) -> str:
    """A spec over a CSV source (its header makes the schema known) and a CSV lookup."""
    orders = tmp_path / "orders.csv"
    orders.write_text("order_id,amount,email,status,ts\n1,5.0,a@x.com,paid,2026-01-01\n")
    customers = tmp_path / "customers.csv"
    customers.write_text("order_id,segment\n1,gold\n")
    spec = {
        "name": "checks",
        "sources": [
            {"name": "orders", "type": "file", "path": str(orders)},
            {"name": "customers", "type": "file", "path": str(customers)},
        ],
        "steps": steps,
        "sinks": sinks
        or [{"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}],
        "dead_letter": {"path": str(tmp_path / "dead")},
        **more,
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def validate(capsys, *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def assert_clean_error(out: str) -> None:
    assert "_bw_" not in out and "Traceback" not in out


# --------------------------------------------------------------------------- expressions

HOSTILE = [
    ("__import__('os').system('id')", "names starting with '__' are not allowed"),
    ("amount.__class__", "names starting with '__' are not allowed"),
    ("lambda: 1", "unexpected character ':'"),
    ("amount +", "an operand is missing"),
    ("amount = 1", "did you mean '=='?"),
    ("(" * 300 + "amount" + ")" * 300, "nested too deeply"),
    ("amount" + " + amount" * 200_000, "nested too deeply"),
    ("exec('x')", "unknown function 'exec'"),
]


@pytest.mark.parametrize(("text", "problem"), HOSTILE, ids=[p for _, p in HOSTILE])
def test_plain_validate_rejects_broken_and_hostile_expressions(tmp_path, capsys, text, problem):
    steps = [{"name": "keep", "type": "filter", "where": text}]
    code, out = validate(capsys, write_spec(tmp_path, steps))
    assert code == 2
    assert "steps[0].where: " in out and problem in out
    assert_clean_error(out)
    assert len(out) < 2_000  # a huge expression is not echoed whole


# --------------------------------------------------------------------------- fields

MISSING = [
    ("validate rule", [{"name": "v", "type": "validate", "rules": [
        {"rule": "not_null", "field": "emial"}]}], None, "steps[0].rules[0].field", "email"),
    ("expression rule", [{"name": "v", "type": "validate", "rules": [
        {"rule": "expression", "expr": "amont > 0"}]}], None, "steps[0].rules[0].expr", "amount"),
    ("map derive", [{"name": "m", "type": "map", "derive": {"t": "amont * 2"}}], None,
     "steps[0].derive.t", "amount"),
    ("map cast", [{"name": "m", "type": "map", "cast": {"amont": "float64"}}], None,
     "steps[0].cast.amont", "amount"),
    ("map rename", [{"name": "m", "type": "map", "rename": {"amont": "x"}}], None,
     "steps[0].rename.amont", "amount"),
    ("map drop", [{"name": "m", "type": "map", "drop": ["emial"]}], None,
     "steps[0].drop[0]", "email"),
    ("map select", [{"name": "m", "type": "map", "select": ["order_id", "statu"]}], None,
     "steps[0].select[1]", "status"),
    ("field renamed away", [{"name": "m", "type": "map", "rename": {"amount": "total"}},
                            {"name": "f", "type": "filter", "where": "amount > 1"}], None,
     "steps[1].where", None),
    ("filter where", [{"name": "f", "type": "filter", "where": "statuss == 'paid'"}], None,
     "steps[0].where", "status"),
    ("lookup key", [{"name": "l", "type": "lookup", "lookup": "customers", "on": "ordr_id"}],
     None, "steps[0].on", "order_id"),
    ("lookup field", [{"name": "l", "type": "lookup", "lookup": "customers", "on": "order_id",
                       "fields": ["segmnt"]}], None, "steps[0].fields[0]", "segment"),
    ("mask field", [{"name": "k", "type": "mask", "fields": [
        {"field": "emial", "strategy": "redact"}]}], None, "steps[0].fields[0].field", "email"),
    ("window group_by", [{"name": "w", "type": "window", "group_by": ["statuss"]}], None,
     "steps[0].group_by[0]", "status"),
    ("window metric", [{"name": "w", "type": "window", "metrics": {"s": "sum(amont)"}}], None,
     "steps[0].metrics.s", "amount"),
    ("window event_time", [{"name": "w", "type": "window", "event_time": "tss"}], None,
     "steps[0].event_time", "ts"),
    ("batch key", [{"name": "b", "type": "batch", "key": ["statuss"], "batch_size": 2}], None,
     "steps[0].key[0]", "status"),
    ("after a window", [{"name": "w", "type": "window", "group_by": ["status"]},
                        {"name": "f", "type": "filter", "where": "amount > 1"}], None,
     "steps[1].where", None),
    ("report group_by", [], [{"name": "r", "type": "report", "path": "r.json",
                              "group_by": ["statuss"]}], "sinks[0].group_by[0]", "status"),
    ("report metric", [], [{"name": "r", "type": "report", "path": "r.json",
                            "metrics": {"s": "sum(nosuch)"}}], "sinks[0].metrics.s", None),
    ("dead-letter report", [], [
        {"name": "r", "type": "report", "path": "r.json", "input": "dead_letters",
         "group_by": ["rules"]}], "sinks[0].group_by[0]", "rule"),
    ("kafka key_field", [], [{"name": "k", "type": "kafka", "bootstrap_servers": "b:9092",
                              "topic": "t", "key_field": "ordr_id"}],
     "sinks[0].key_field", "order_id"),
]


@pytest.mark.parametrize(
    ("steps", "sinks", "path", "guess"), [m[1:] for m in MISSING], ids=[m[0] for m in MISSING]
)
def test_plain_validate_finds_every_missing_field(tmp_path, capsys, steps, sinks, path, guess):
    code, out = validate(capsys, write_spec(tmp_path, steps, sinks))
    assert code == 2, out
    assert f"{path}: unknown field" in out
    if guess:
        assert f"did you mean '{guess}'?" in out
    assert_clean_error(out)


def test_internal_columns_are_not_fields(tmp_path, capsys):
    steps = [{"name": "f", "type": "filter", "where": "_bw_offset > 1"}]
    code, out = validate(capsys, write_spec(tmp_path, steps))
    assert code == 2 and "steps[0].where: '_bw_offset' is an internal column" in out


def test_unknown_schema_is_not_guessed(tmp_path, capsys):
    """JSONL lines may each have other fields: nothing can be said, so nothing fails."""
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n')
    steps = [{"name": "f", "type": "filter", "where": "later_field > 1"}]
    path = write_spec(tmp_path, steps, sources=[{"name": "rows", "type": "file", "path": str(src)}])
    assert validate(capsys, path)[0] == 0


def test_declared_fields_with_drop_make_the_schema_known(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text('{"a": 1}\n')
    steps = [
        {"name": "v", "type": "validate", "fields": {"amount": {"type": "float64"}},
         "additional_fields": "drop"},
        {"name": "f", "type": "filter", "where": "amout > 1"},
    ]
    path = write_spec(tmp_path, steps, sources=[{"name": "rows", "type": "file", "path": str(src)}])
    code, out = validate(capsys, path)
    assert code == 2 and "steps[1].where: unknown field 'amout'; did you mean 'amount'?" in out
    steps[0]["additional_fields"] = "keep"  # other fields may be there: not decidable
    path = write_spec(tmp_path, steps, sources=[{"name": "rows", "type": "file", "path": str(src)}])
    assert validate(capsys, path)[0] == 0


def test_plain_validate_does_not_import_beam(tmp_path):
    path = write_spec(tmp_path, [{"name": "f", "type": "filter", "where": "amount > 1"}])
    code = (
        f"import sys; from pipelines.cli import main; rc = main(['validate', {path!r}]); "
        "print(rc, 'apache_beam' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "0 False"


# --------------------------------------------------------------------------- at run time


def test_runtime_unknown_field_hint_hides_internal_columns():
    table = with_positions(pa.table({"amount": [1.0]}), "f.jsonl", [1])
    with pytest.raises(ExpressionError) as info:
        parse("amont + 1").evaluate(table)
    assert "did you mean 'amount'?" in str(info.value) and "_bw_" not in str(info.value)


def test_report_metric_on_a_missing_field_names_it():
    table = with_positions(pa.table({"amount": [1.0]}), "f.jsonl", [1])
    with pytest.raises(ReportFieldError, match=r"metrics.s: unknown field 'nosuch'") as info:
        GroupAggregate([], {"s": "sum(nosuch)"}).partial(table)
    assert "_bw_" not in str(info.value)


# --------------------------------------------------------------------------- --deep


def test_deep_validation_fails_the_template_stage_that_fails_at_run(tmp_path, capsys):
    code, out = validate(
        capsys, "data_processing", "--deep",
        "-p", "processing_stages=transform", "-p", f"output_dir={tmp_path}",
    )
    assert code == 2
    assert "steps[0].derive.total: cannot apply '*' to string and int64" in out
    assert_clean_error(out)


def test_deep_validation_type_checks_each_input_file(tmp_path, capsys):
    steps = [{"name": "f", "type": "filter", "where": "email > 3"}]
    code, out = validate(capsys, write_spec(tmp_path, steps), "--deep")
    assert code == 2 and "steps[0].where: " in out and "orders.csv" in out
    assert_clean_error(out)


def test_build_errors_are_reported_with_the_node_path():
    from apache_beam.typehints.decorators import TypeCheckError

    from pipelines.build import BuildContext
    from pipelines.steps import filter as filter_kind

    node = filter_kind.FilterStepSpec(name="f", type="filter", where="a > 1")
    ctx = BuildContext(spec=None, pipeline=None, run_id="r")
    with pytest.raises(TypeCheckError) as info:
        filter_kind.build(node, ctx, "steps[3]", None)  # no pipeline: Beam raises
    assert build_problem(info.value).startswith("steps[3]: cannot be built: ")
