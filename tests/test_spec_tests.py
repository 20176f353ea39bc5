"""Spec tests (``tests:`` blocks, ``beamwright test``) and ``beamwright templates export``.

Every shipped template's own tests run here, so they run in ``make test``; the rest checks the
mechanism: a failing case exits 1 with a diff naming the field, ``--update`` records the
actual outputs and keeps the rest of the file, unmocked sources are refused, and an exported
template runs unchanged with the same counts as the template.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import templates
from pipelines.cli import main
from pipelines.loading import load_spec
from pipelines.spec import json_schema
from pipelines.spec_diff import compare_dead_letters, compare_rows
from pipelines.spec_test_targets import load_test_target
from pipelines.spec_test_update import replace_tests_block
from pipelines.spec_tests import ExpectedDeadLetters, ExpectedRows

DATA = Path(__file__).parent / "data" / "spec_tests"
SPEC = DATA / "orders_spec.yaml"


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    """The spec file with tests and its mock file, in a directory the test may rewrite."""
    shutil.copy(DATA / "orders.csv", tmp_path / "orders.csv")
    return Path(shutil.copy(SPEC, tmp_path / "orders_spec.yaml"))


@pytest.mark.parametrize("name", templates.names())
def test_every_template_passes_its_tests(name, capsys):
    code = main(["test", name])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert " 0 failed" in out and "PASS" in out


def test_a_spec_file_with_tests_passes(capsys):
    assert main(["test", str(SPEC)]) == 0
    out = capsys.readouterr().out
    assert "PASS   inline_rows" in out and "PASS   csv_file" in out
    assert "2 passed, 0 failed" in out


def test_a_failing_case_exits_1_with_a_diff_naming_the_field(spec_copy, capsys):
    text = spec_copy.read_text()
    spec_copy.write_text(
        text.replace(
            "amount: 10.0, quantity: 3, total: 30.0}", "amount: 10.0, quantity: 3, total: 31.0}"
        )
    )
    assert main(["test", str(spec_copy), "--case", "inline_rows"]) == 1
    out = capsys.readouterr().out
    assert "FAIL   inline_rows" in out
    assert 'sink orders_out: row {order_id: "A-1"' in out
    assert "total: expected 31.0, got 30.0" in out
    assert "0 passed, 1 failed" in out


def test_update_records_the_actual_outputs_and_keeps_the_rest(spec_copy, capsys):
    text = spec_copy.read_text()
    broken = text.replace("total: 30.0}", "total: 31.0}").replace(
        '{step: check, rule: "between:amount", count: 1}', "{step: check, rule: other, count: 2}"
    )
    spec_copy.write_text(broken)
    assert main(["test", str(spec_copy)]) == 1
    out = capsys.readouterr().out
    assert "unexpected dead letters: 1 from check, rule between:amount" in out

    assert main(["test", str(spec_copy), "--update"]) == 0
    assert "updated 2 case(s)" in capsys.readouterr().out
    updated = spec_copy.read_text()
    head, tail = text.split("\ntests:\n")
    assert updated.startswith(head + "\ntests:\n")  # everything before the block, unchanged
    assert updated.endswith(tail[tail.index("# Kept as written") :])  # and after it
    assert main(["test", str(spec_copy)]) == 0
    spec = load_spec(spec_copy)
    case = {c.name: c for c in spec.tests}
    assert {
        "order_id": "A-1",
        "customer": "acme",
        "amount": 10.0,
        "quantity": 3,
        "total": 30.0,
    } in (case["inline_rows"].outputs["orders_out"].rows)
    assert [(d.rule, d.count) for d in case["csv_file"].dead_letters] == [("between:amount", 1)]


def test_an_unmocked_source_is_refused(spec_copy, capsys):
    text = spec_copy.read_text()
    spec_copy.write_text(text.replace("      web_orders: {rows: []}\n", ""))
    assert main(["test", str(spec_copy)]) == 2
    err = capsys.readouterr().err
    assert "tests[1].inputs: source 'web_orders' is not mocked" in err
    assert "add inputs.web_orders: {rows: [...]} or {file: PATH}" in err


def test_unknown_names_in_cases_are_invalid_with_hints(spec_copy, capsys):
    text = spec_copy.read_text().replace(
        "      orders_out:\n        rows:", "      order_out:\n        rows:"
    )
    spec_copy.write_text(text)
    assert main(["test", str(spec_copy)]) == 2
    assert "tests[0].outputs.order_out: not a sink; did you mean 'orders_out'?" in (
        capsys.readouterr().err
    )
    assert main(["test", str(SPEC), "--case", "inline_row"]) == 2
    assert "--case: no case named 'inline_row'; did you mean 'inline_rows'?" in (
        capsys.readouterr().err
    )


def test_template_cases_with_their_own_parameters_run_their_own_spec():
    """record_sync's tests file: one case per direction, each checked and run against the
    template expanded with its own parameters (the runs: test_every_template_passes_its_tests);
    only the default direction's case goes with the file-level spec (export --with-tests)."""
    target = load_test_target("record_sync", {}, is_file=False)
    runs = {c.label: [s.name for s in c.spec.sources] for c in target.cases}
    assert runs == {
        "api_records_become_table_rows": ["api"],
        "table_changes_go_to_the_api [direction=db_to_api]": ["db_changes"],
        "both_sides_changes_reconciled [direction=both, conflicts=manual]": [
            "api_changes",
            "db_changes",
        ],
    }
    assert [c.name for c in target.spec.tests] == ["api_records_become_table_rows"]
    assert [c.label for c in target.left_out()] == list(runs)[1:]


def test_case_parameters_are_checked_per_case(tmp_path, monkeypatch, capsys):
    tests = tmp_path / "record_sync.yaml"
    monkeypatch.setattr("pipelines.spec_test_targets.template_tests_file", lambda _t: tests)
    case = "- name: two_way\n  parameters: {%s: both}\n  inputs: {api: {rows: []}}\n"
    tests.write_text("tests:\n" + case % "directon")
    assert main(["test", "record_sync"]) == 2
    err = capsys.readouterr().err
    assert "tests[0].parameters.directon: not a parameter of this pipeline; did you mean " in err
    tests.write_text("tests:\n" + case % "direction")
    assert main(["test", "record_sync"]) == 2
    err = capsys.readouterr().err
    assert "tests[0].inputs.api: not a source; valid: api_changes, db_changes" in err


def test_a_spec_file_case_takes_no_parameters(spec_copy, capsys):
    text = spec_copy.read_text().replace(
        "  - name: inline_rows\n", "  - name: inline_rows\n    parameters: {x: 1}\n"
    )
    spec_copy.write_text(text)
    assert main(["test", str(spec_copy)]) == 2
    assert "tests[0]: unknown key 'parameters'" in capsys.readouterr().err


def test_a_spec_without_tests_is_invalid(tmp_path, capsys):
    spec = tmp_path / "plain.yaml"
    spec.write_text(SPEC.read_text().split("\ntests:\n")[0])
    assert main(["test", str(spec)]) == 2
    assert "has no test cases" in capsys.readouterr().err


def test_unordered_rows_pair_differing_rows_and_list_the_rest():
    expected = ExpectedRows(rows=[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}])
    actual = [{"id": 2, "v": "b"}, {"id": 1, "v": "z"}, {"id": 9, "v": "q", "extra": None}]
    lines = compare_rows(expected, actual, "sink s")
    assert 'sink s: row {id: 1} differs: v: expected "a", got "z"' in lines
    assert 'sink s: missing row {id: 3, v: "c"}' in lines
    assert 'sink s: unexpected row {id: 9, v: "q"}' in lines
    assert compare_rows(ExpectedRows(rows=list(reversed(actual))), actual, "s") == []
    ordered = ExpectedRows(rows=list(reversed(actual)), ordered=True, fields=["id"])
    assert "s: row 0: id: expected 9, got 2" in compare_rows(ordered, actual, "s")


def test_values_compare_by_meaning():
    import datetime as dt

    expected = ExpectedRows(rows=[{"d": dt.date(2026, 1, 5), "n": 5, "x": 0.1 + 0.2}])
    assert compare_rows(expected, [{"d": "2026-01-05", "n": 5.0, "x": 0.3}], "s") == []
    assert compare_rows(expected, [{"d": "2026-01-06", "n": 5.0, "x": 0.3}], "s") != []


def test_dead_letter_expectations_cover_every_rule():
    letters = [
        {"step": "v", "rule": "r1", "payload": {"id": 1}},
        {"step": "v", "rule": "r2", "payload": {"id": 2}},
    ]
    assert compare_dead_letters([ExpectedDeadLetters(rule="r1", count=1)], letters) == [
        "unexpected dead letters: 1 from v, rule r2"
    ]
    wrong = [
        ExpectedDeadLetters(step="v", rule="r1", rows=[{"id": 3}]),
        ExpectedDeadLetters(rule="r2", count=2),
    ]
    assert compare_dead_letters(wrong, letters) == [
        "dead letters (v, rule r1): missing row {id: 3}",
        "dead letters (v, rule r1): unexpected row {id: 1}",
        "dead letters (any step, rule r2): expected 2, got 1",
    ]


def test_replace_tests_block_keeps_text_around_it():
    text = "name: x\n# about tests\ntests:\n- name: a\n  inputs: {}\n\n# next\nsinks: []\n"
    out = replace_tests_block(text, [{"name": "b"}], where="f")
    assert out == "name: x\n# about tests\ntests:\n- {name: b}\n\n# next\nsinks: []\n"


def test_the_schema_describes_tests():
    schema = json.dumps(json_schema())
    assert "SpecTestCase" in schema and "dead_letters" in schema and "ordered" in schema


def test_export_runs_unchanged_with_the_template_counts(tmp_path, capsys):
    key = tmp_path / "pseudonym.key"
    exported = tmp_path / "data_processing.yaml"
    params = ["-p", f"pseudonym_key_file={key}"]
    assert (
        main(
            [
                "templates",
                "export",
                "data_processing",
                *params,
                "-p",
                f"output_dir={tmp_path / 'a'}",
                "--out",
                str(exported),
            ]
        )
        == 0
    )
    assert exported.read_text().startswith("# Expanded from the template 'data_processing'")
    from_file = tmp_path / "file.json"
    from_template = tmp_path / "template.json"
    assert main(["run", str(exported), "-q", "--summary-json", str(from_file)]) == 0
    template_run = ["run", "data_processing", *params, "-p", f"output_dir={tmp_path / 'b'}"]
    assert main([*template_run, "-q", "--summary-json", str(from_template)]) == 0

    def counts(path: Path) -> dict:
        summary = json.loads(path.read_text())
        assert summary["status"] == "COMPLETE"
        return {
            n["name"]: (n["rows_in"], n["rows_out"], n["rows_dead_lettered"], n["rules"])
            for n in summary["nodes"]
        }

    assert counts(from_file) == counts(from_template)
    assert counts(from_file)["validate"][0] > 0


def test_export_to_stdout_and_unknown_template(capsys):
    assert main(["templates", "export", "data_processing"]) == 0
    out = capsys.readouterr().out
    assert "\nsources:\n" in out and "template: data_processing@" in out
    assert main(["templates", "export", "data_procesing"]) == 2
    assert "did you mean 'data_processing'?" in capsys.readouterr().err


def test_export_with_tests_runs_its_tests_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths in the export resolve here, not in the repo
    exported = tmp_path / "exported.yaml"
    assert (
        main(["templates", "export", "data_processing", "--with-tests", "--out", str(exported)])
        == 0
    )
    capsys.readouterr()
    assert main(["test", str(exported), "--case", "unknown_customer"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out


def test_a_new_case_is_recorded_by_update(spec_copy, capsys):
    new_case = (
        "  - name: recorded\n"
        "    inputs:\n"
        "      orders: {rows: [{order_id: N-1, customer: initech, amount: 2, quantity: 2}]}\n"
        "      web_orders: {rows: []}\n"
        "    outputs:\n"
        "      by_customer:\n"
        "    summary:\n"
        "      totals:\n"
    )
    text = spec_copy.read_text().replace("\n# Kept as written", f"{new_case}\n# Kept as written")
    spec_copy.write_text(text)
    assert main(["test", str(spec_copy), "--case", "recorded"]) == 1
    assert "no expected rows recorded; run beamwright test --update" in capsys.readouterr().out
    assert main(["test", str(spec_copy), "--case", "recorded", "--update"]) == 0
    case = {c.name: c for c in load_spec(spec_copy).tests}["recorded"]
    assert case.outputs["by_customer"].rows == [
        {"customer": "initech", "orders": 1, "revenue": 4.0}
    ]
    assert (case.summary["totals"].rows_in, case.summary["totals"].rows_out) == (1, 1)
    assert main(["test", str(spec_copy)]) == 0


def test_update_rewrites_a_json_spec(tmp_path, capsys):
    from pipelines.loading import read_spec_file

    data = read_spec_file(SPEC)
    data["tests"][1]["outputs"]["orders_out"]["rows"][0]["total"] = 99.0
    data["tests"][1]["inputs"]["orders"]["file"] = str(DATA / "orders.csv")
    spec = tmp_path / "orders_spec.json"
    spec.write_text(json.dumps(data, default=str))
    assert main(["test", str(spec), "--case", "csv_file"]) == 1
    assert "sink orders_out: row 0: total: expected 99.0, got 25.0" in capsys.readouterr().out
    assert main(["test", str(spec), "--case", "csv_file", "--update"]) == 0
    rewritten = json.loads(spec.read_text())
    assert rewritten["tests"][1]["outputs"]["orders_out"]["rows"][0] == {
        "order_id": "F-1",
        "total": 25.0,
    }
    assert rewritten["governance"] == data["governance"]
    assert main(["test", str(spec)]) == 0


def test_validate_checks_the_tests_block(spec_copy, capsys):
    assert main(["validate", str(spec_copy)]) == 0
    capsys.readouterr()
    spec_copy.write_text(spec_copy.read_text().replace("      web_orders: {rows: []}\n", ""))
    assert main(["validate", str(spec_copy)]) == 2
    assert "tests[1].inputs: source 'web_orders' is not mocked" in capsys.readouterr().err
