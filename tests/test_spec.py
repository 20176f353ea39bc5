"""Spec files and parameters: what users write, and the errors they get when it is wrong."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pipelines.loading import SpecError, load_spec, spec_from_data
from pipelines.spec import json_schema

BASE = {
    "name": "orders",
    "parameters": {
        "input": {"type": "string", "default": "in/*.jsonl"},
        "max_amount": {"type": "number", "default": 100},
        "strict": {"type": "boolean", "default": False},
        "statuses": {"type": "list", "default": ["paid", "shipped"]},
    },
    "sources": [{"name": "orders", "type": "file", "path": "${input}"}],
    "steps": [
        {
            "name": "check",
            "type": "validate",
            "rules": [
                {"rule": "between", "field": "amount", "min": 0, "max": "${max_amount}"},
                {"rule": "in_set", "field": "status", "values": "${statuses}"},
            ],
        }
    ],
    "sinks": [{"name": "out", "type": "file", "path": "out/${input}-x"}],
    "dead_letter": {"path": "dl"},
}


def problems(data, params=None) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_from_data(data, params)
    return info.value.problems


def with_step(**changes):
    data = json.loads(json.dumps(BASE))
    data["steps"][0].update(changes)
    return data


def test_parameters_substitute_with_their_types():
    spec = spec_from_data(BASE, {"max_amount": "250.5", "statuses": "paid,refunded"})
    rules = spec.steps[0].rules
    assert rules[0].max == 250.5
    assert rules[1].values == ["paid", "refunded"]
    assert spec.sources[0].path == "in/*.jsonl"
    assert spec.sinks[0].path == "out/in/*.jsonl-x"


def test_list_parameter_accepts_json_array():
    spec = spec_from_data(BASE, {"statuses": '["a", "b"]'})
    assert spec.steps[0].rules[1].values == ["a", "b"]


def test_wrongly_typed_parameter_is_an_error():
    assert problems(BASE, {"max_amount": "lots"}) == [
        "parameters.max_amount: 'lots' is not a valid number"
    ]
    assert "not a valid boolean" in problems(BASE, {"strict": "maybe"})[0]


def test_unknown_parameter_gets_a_hint():
    assert problems(BASE, {"max_amout": "3"}) == [
        "parameters.max_amout: not a parameter of this pipeline; did you mean 'max_amount'?"
    ]


def test_undefined_placeholder_names_the_path():
    data = json.loads(json.dumps(BASE))
    data["sinks"][0]["path"] = "${outptu}/x"
    (problem,) = problems(data)
    assert problem.startswith("sinks[0].path: '${outptu}' is not a declared parameter")


def test_required_parameter_without_value():
    data = json.loads(json.dumps(BASE))
    data["parameters"]["input"] = {"type": "string", "required": True}
    assert problems(data) == [
        "parameters.input: required and has no default; pass --param input=..."
    ]


def test_unknown_key_suggests_the_right_one():
    data = with_step(rules=[{"rule": "regex", "field": "email", "regx": "a+"}])
    assert problems(data) == ["steps[0].rules[0]: unknown key 'regx'; did you mean 'regex'?"]


def test_unknown_rule_kind_suggests_the_right_one():
    data = with_step(rules=[{"rule": "regexp", "field": "email"}])
    assert problems(data) == ["steps[0].rules[0]: unknown kind 'regexp'; did you mean 'regex'?"]


def test_bad_value_names_the_exact_path():
    data = with_step(
        rules=[{"rule": "between", "field": "a"}, {"rule": "max", "field": "a", "max": "ten"}]
    )
    got = problems(data)
    assert got[0] == "steps[0].rules[0]: set 'min', 'max' or both"
    assert got[1].startswith("steps[0].rules[1].max: Input should be a valid number")


def test_invalid_regex_is_caught_before_running():
    data = with_step(rules=[{"rule": "regex", "field": "a", "regex": "(unclosed"}])
    assert "invalid regex '(unclosed'" in problems(data)[0]


def test_literal_choices_get_a_hint():
    data = json.loads(json.dumps(BASE))
    data["sinks"][0]["format"] = "parquett"
    assert problems(data)[0].endswith("did you mean 'parquet'?")


def test_graph_references_are_checked():
    data = with_step(input="ordrs")
    assert problems(data) == [
        "steps[0].input: 'ordrs' is not a source or an earlier step; did you mean 'orders'?"
    ]


def test_duplicate_names_are_rejected():
    data = json.loads(json.dumps(BASE))
    data["sinks"][0]["name"] = "check"
    assert problems(data) == ["sinks[0].name: 'check' is already the name of a step"]


def test_missing_required_sections():
    data = {k: v for k, v in BASE.items() if k != "dead_letter"}
    assert problems(data) == ["dead_letter: required key is missing"]


def test_mask_strategy_options_are_required():
    data = with_step(type="mask", fields=[{"field": "id", "strategy": "pseudonymize"}])
    data["steps"][0].pop("rules")
    assert problems(data) == ["steps[0].fields[0]: strategy 'pseudonymize' needs 'key'"]


def test_yaml_python_tags_are_not_evaluated(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert "cannot parse" in info.value.problems[0]


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_json_schema_describes_steps_and_rules():
    schema = json_schema()
    text = json.dumps(schema)
    for kind in ("validate", "mask", "map", "filter", "lookup", "not_null", "regex", "unique"):
        assert f'"{kind}"' in text
    assert schema["title"] == "beamwright pipeline spec"


def test_customising_a_spec_from_python():
    spec = spec_from_data(BASE)
    longer = spec.add_step(
        {"name": "paid_only", "type": "filter", "where": "status == 'paid'"}, after="check"
    )
    assert [s.name for s in longer.steps] == ["check", "paid_only"]
    assert longer.step("paid_only").where == "status == 'paid'"
    with pytest.raises(KeyError, match="steps"):
        spec.step("nope")


def test_cli_help_does_not_import_beam():
    code = (
        "import sys; from pipelines.cli import main\n"
        "try:\n    main(['templates', 'list'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('apache_beam', 'great_expectations', 'pyarrow') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "data_processing" in out.stdout
    assert "HEAVY []" in out.stdout
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom pipelines.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\nprint('apache_beam' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().endswith("False")
