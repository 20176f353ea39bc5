"""Audiences and conditional masking (issue 17): one run writes each output as its audience
may see it, conditions are decided when the pipeline is built (the per-audience transform is
the plain mask a user would write), and lineage shows masking and audience per output."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from pipelines import spec as s
from pipelines.audience_masks import sink_rules
from pipelines.audience_spec import AudienceSpec, ConditionSpec, holds
from pipelines.checks import _processors, build_graph, static_problems
from pipelines.loading import SpecError, load_spec
from tests import openlineage_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "audiences"
SCALE = ["public", "internal", "confidential", "secret", "top_secret"]


@pytest.fixture
def example(tmp_path, monkeypatch) -> Path:
    """The shipped example (spec + data) in a fresh directory, which is the working one."""
    shutil.copytree(EXAMPLE, tmp_path / "example")
    monkeypatch.chdir(tmp_path / "example")
    return tmp_path / "example"


def example_data() -> dict:
    return yaml.safe_load((EXAMPLE / "spec.yaml").read_text())


def spec_of(data: dict) -> s.PipelineSpec:
    return s.PipelineSpec.model_validate(data)


def problem_of(data: dict) -> str:
    with pytest.raises(ValueError) as info:
        spec_of(data)
    return str(info.value)


def rows(directory: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(directory.glob("part-*")) for line in f.open()]


# --------------------------------------------------------------------------- one run, two views


@pytest.mark.slow
def test_one_run_writes_each_output_as_its_audience_may_see_it(example, monkeypatch):
    from pipelines.run import run_spec
    from tests.conftest import CAPTURED

    canary = "canary-salt-4f1e9b7c2d"
    monkeypatch.setenv("ACCOUNT_KEY", canary)
    data = example_data()
    data["steps"][1]["fields"].append(  # a conditional rule with a secret: never in any file
        {
            "field": "account_id",
            "strategy": "hash",
            "salt": {"env": "ACCOUNT_KEY"},
            "when": {"attribute": "roles", "contains": "analyst"},
        }
    )
    (example / "spec.yaml").write_text(yaml.safe_dump(data))
    first = len(CAPTURED)
    run_spec(load_spec("spec.yaml"))

    analysts = {r["ssn"][-4:]: r for r in rows(example / "out/analysts")}
    risk = {r["ssn"][-4:]: r for r in rows(example / "out/risk")}
    # the workflow SDK's documented examples, for the lower audience
    assert analysts["6789"]["ssn"] == "***-**-6789"
    assert analysts["6789"]["balance"] == "$1M-$10M"
    assert {r["balance"] for r in analysts.values()} == {"< $1M", "$1M-$10M", "$10M-$50M", "> $50M"}
    assert all(len(r["account_id"]) == 64 for r in analysts.values())  # hashed
    # exact values for the higher one; the unconditional rule applies to both
    assert risk["6789"]["ssn"] == "123-45-6789"
    assert risk["6789"]["balance"] == 5_000_000
    assert risk["6789"]["account_id"] == "A001"
    assert {r["holder"] for r in [*analysts.values(), *risk.values()]} == {"[REDACTED]"}

    # the dead letters' audience (analysts) gets the fields masked for it redacted
    (letter,) = rows(example / "out/dead_letters")
    assert letter["payloadString"].startswith("[REDACTED],[REDACTED],[REDACTED],[REDACTED]")

    events = CAPTURED[first:]
    complete = events[-1]
    assert complete["eventType"] == "COMPLETE"
    assert not [p for e in events for p in openlineage_schema.event_problems(e)]
    outputs = {Path(o["name"]).name: o["facets"] for o in complete["outputs"]}

    def masking(output: str, field: str) -> list[bool]:
        fields = outputs[output]["columnLineage"]["fields"][field]["inputFields"]
        return [t["masking"] for f in fields for t in f["transformations"]]

    assert True in masking("analysts", "ssn") and True in masking("analysts", "balance")
    assert True not in masking("risk", "ssn") and True not in masking("risk", "balance")
    assert outputs["analysts"]["beamwright_audience"]["name"] == "analysts"
    assert outputs["analysts"]["beamwright_audience"]["attributes"]["clearance"] == "confidential"
    assert outputs["analysts"]["beamwright_audience"]["masked_fields"] == [
        "account_id",
        "balance",
        "holder",
        "ssn",
    ]
    assert outputs["risk"]["beamwright_audience"]["masked_fields"] == ["holder"]
    assert outputs["dead_letters"]["beamwright_audience"]["name"] == "analysts"
    assert set(outputs["dead_letters"]["beamwright_audience"]["masked_fields"]) == {
        "account_id",
        "balance",
        "holder",
        "ssn",
    }
    assert {"key": "audience", "value": "risk", "source": "BEAMWRIGHT"} in outputs["risk"]["tags"][
        "tags"
    ]
    assert "beamwright_principal" in complete["run"]["facets"]

    written = [p for p in example.rglob("*") if p.is_file()]
    assert not [p for p in written if canary in p.read_text(errors="replace")]
    assert canary not in json.dumps(events)


# --------------------------------------------------------------------------- no row-level cost


def test_the_audience_mask_is_the_plain_mask_a_user_would_write(example):
    """What a sink's audience gets is built when the pipeline is built and is structurally the
    unconditional mask step a user would write for that audience: same processor config."""
    conditional = build_graph(load_spec("spec.yaml"), streaming=False)
    found = _processors(conditional.pipeline)
    assert "analysts.protect" in found and "risk.protect" not in found  # risk: nothing to add

    plain = example_data()
    rules = plain["steps"][1]["fields"]
    plain["steps"][1]["fields"] = [rules[0]]
    plain["steps"].append(
        {
            "name": "for_analysts",
            "type": "mask",
            "fields": [{k: v for k, v in r.items() if k != "when"} for r in rules[1:]],
        }
    )
    for sink in plain["sinks"]:
        sink.pop("audience")
    plain["dead_letter"].pop("audience")
    plain["governance"] = {"fields": {"ssn": "PII"}}
    user_written = _processors(build_graph(spec_of(plain), streaming=False).pipeline)
    assert found["analysts.protect"].fields == user_written["for_analysts"].fields
    assert found["protect"].fields == user_written["protect"].fields  # the unconditional part


def test_sinks_with_the_same_masking_share_one_mask(example):
    data = example_data()
    data["sinks"].append(
        {"name": "analysts_eu", "type": "file", "path": "out/eu", "audience": "analysts_eu"}
    )
    data["governance"]["audiences"]["analysts_eu"] = {
        **data["governance"]["audiences"]["analysts"],
        "region": "eu_west",
    }
    found = _processors(build_graph(spec_of(data), streaming=False).pipeline)
    masks = [name for name in found if name.endswith(".protect")]
    assert masks == ["analysts.protect"]  # built once, for the first sink that needed it


# --------------------------------------------------------------------------- conditions


def test_conditions_are_decided_on_the_audience_and_fail_closed():
    analyst = AudienceSpec(
        clearance="confidential", access_level=5, region="us_east", roles=["analyst"]
    )
    officer = AudienceSpec(clearance="secret", access_level=9, region="eu_west", roles=["risk"])

    def c(**kw) -> ConditionSpec:
        return ConditionSpec.model_validate(kw)

    below = {"attribute": "clearance", "security_level_below": "secret"}
    in_eu = {"attribute": "region", "equals": "eu_west"}
    below_secret = c(**below)
    assert holds(below_secret, analyst, SCALE) and not holds(below_secret, officer, SCALE)
    assert holds(c(attribute="access_level", less_than=7), analyst, SCALE)
    assert not holds(c(attribute="access_level", less_than=7), officer, SCALE)
    assert holds(c(attribute="region", **{"in": ["us_east"]}), analyst, SCALE)
    assert holds(c(attribute="roles", contains="risk"), officer, SCALE)
    both, either = c(**{"and": [below, in_eu]}), c(**{"or": [below, in_eu]})
    assert not holds(both, analyst, SCALE) and holds(either, officer, SCALE)
    # an attribute the audience lacks, or no audience at all: the mask applies
    assert holds(c(attribute="department", equals="risk"), officer, SCALE)
    assert holds(c(attribute="access_level", greater_than=100), None, SCALE)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["steps"][1]["fields"][1]["when"].update(attribute="clearence"),
            "steps[1].fields[1].when.attribute: no audience attribute 'clearence'; did you mean 'clearance'?",
        ),
        (
            lambda d: d["sinks"][0].update(audience="analyst"),
            "sinks[0].audience: 'analyst' is not an audience; did you mean 'analysts'?",
        ),
        (
            lambda d: d["dead_letter"].update(audience="auditors"),
            "dead_letter.audience: 'auditors' is not an audience; audiences: analysts, risk",
        ),
        (
            lambda d: d["governance"]["audiences"]["risk"].update(clearance="secrett"),
            "governance.audiences.risk.clearance: 'secrett' is not on governance.clearance_levels; did you mean 'secret'?",
        ),
        (
            lambda d: d["steps"][1]["fields"][1]["when"].update(security_level_below="sekret"),
            "steps[1].fields[1].when.security_level_below: 'sekret' is not on governance.clearance_levels; did you mean 'secret'?",
        ),
        (
            lambda d: d["steps"][1]["fields"][2]["when"]["or"][0].update(
                attribute="region", less_than=7
            ),
            "'less_than' compares numbers but 'region' is 'us_east'; use equals or in for text",
        ),
    ],
)
def test_audience_mistakes_fail_validation_with_a_hint(change, expected):
    data = copy.deepcopy(example_data())
    change(data)
    assert expected in problem_of(data)


def test_require_audience_refuses_an_output_that_may_carry_classified_fields(example):
    data = example_data()
    data["sinks"][1].pop("audience")
    data["sinks"].append(
        {"name": "counts", "type": "report", "path": "out/counts.csv", "group_by": ["region"]}
    )
    spec = spec_of(data)
    problems = static_problems(spec)
    assert problems == [
        "sinks[1].audience: sink 'risk' may carry classified fields (balance, ssn) and names no "
        "audience, which governance.require_audience refuses; add 'audience:' (analysts, risk)"
    ]  # the report of counts per region carries none
    with pytest.raises(SpecError) as info:  # and a run refuses it before anything runs
        build_graph(spec, streaming=False)
    assert info.value.problems == problems


def test_a_step_may_not_read_a_field_masked_per_audience(example):
    data = example_data()
    data["steps"].append(
        {"name": "derive", "type": "map", "derive": {"balance_k": "balance / 1000"}}
    )
    (problem,) = static_problems(spec_of(data))
    assert problem.startswith(
        "steps[2].derive.balance_k: reads 'balance', which steps[1] ('protect') masks per "
        "audience (fields[2].when)"
    )
    assert "move the mask step after 'derive'" in problem


def test_outputs_without_an_audience_get_every_mask_and_dead_letter_readers_theirs(example):
    data = example_data()
    data["governance"]["require_audience"] = False
    data["sinks"].append({"name": "anyone", "type": "file", "path": "out/anyone"})
    data["sinks"].append(
        {
            "name": "rejections",
            "type": "report",
            "input": "dead_letters",
            "path": "out/rejections.csv",
            "group_by": ["rule"],
            "audience": "risk",
        }
    )
    spec = spec_of(data)
    assert [r.rule.field for r in sink_rules(spec, ["protect"], None)] == ["ssn", "balance"]
    built = build_graph(spec, streaming=False)
    masks = [name for name in _processors(built.pipeline) if name.endswith(".protect")]
    assert masks == ["analysts.protect"]  # 'anyone' gets the strictest masking: the analysts'
    labels = {
        node.full_label
        for node in built.pipeline.transforms_stack[0].parts
        if "RedactFor" in node.full_label
    }
    # the dead-letter sink's audience (analysts) and the report's (risk: only the holder)
    assert labels == {"DeadLetters/RedactFor/analysts", "DeadLetters/RedactFor/risk"}


def test_partial_keeps_separators_in_place():
    import pyarrow as pa

    from transforms.masking import MaskError, mask_array

    values = pa.array(["123-45-6789", None, "12-3", "4111 1111 1111 1234", "123-45-6789"])
    masked = mask_array(values, "partial", keep_last=4, keep_separators="- ")
    assert masked.to_pylist() == [
        "***-**-6789",
        None,
        "**-*",  # too short to reveal anything: masked whole, separators kept
        "**** **** **** 1234",
        "***-**-6789",
    ]
    dictionary = mask_array(values.dictionary_encode(), "partial", keep_separators="-")
    assert dictionary.dictionary.to_pylist()[0] == "***-**-6789"
    with pytest.raises(MaskError, match="must not hold the mask_char"):
        mask_array(values, "partial", keep_separators="*-")
