"""Specs sent to workers that are not this process (issue 12, "Remote-runner rules, checked
before submit"): relative paths and driver-local secrets are refused with the spec path and
a hint, before anything is claimed or submitted."""

from __future__ import annotations

import pytest

from pipelines.checks import static_problems
from pipelines.loading import SpecError, spec_from_data
from pipelines.remote_rules import remote_problems
from pipelines.run import run_spec


def spec(run: dict, *, out: str = "out/orders", key: dict | None = None):  # noqa: ANN201
    steps = []
    if key is not None:
        steps = [
            {
                "name": "hide",
                "type": "mask",
                "fields": [{"field": "email", "strategy": "pseudonymize", "key": key}],
            }
        ]
    return spec_from_data(
        {
            "name": "remote",
            "sources": [{"name": "orders", "type": "file", "path": "/data/orders-*.jsonl"}],
            "steps": steps,
            "sinks": [{"name": "out", "type": "file", "path": out}],
            "dead_letter": {"path": "gs://bucket/dead"},
            "run": run,
        }
    )


DATAFLOW = {
    "runner": "dataflow",
    "runner_options": {"project": "p", "region": "r", "temp_location": "gs://b/t"},
}


def test_relative_paths_and_local_secrets_are_refused_on_dataflow():
    problems = remote_problems(spec(DATAFLOW, key={"file": "keys/k", "generate": True}))
    assert problems == [
        "sinks[0].path: 'out/orders' is relative; workers run in their own directory: use an "
        "absolute or gs:// / s3:// path",
        "steps[0].fields[0].key: a file secret is read on the driver's machine, which workers "
        "on 'dataflow' do not share; use a secret store ({store: ...}), or set "
        "run.allow_local_secrets: true if the workers have it too",
    ]


def test_absolute_and_remote_paths_and_store_secrets_pass():
    key = {"store": {"type": "gcp", "project": "p", "name": "pseudonym-key"}}
    assert remote_problems(spec(DATAFLOW, out="gs://bucket/orders", key=key)) == []


def test_local_secrets_can_be_allowed_explicitly():
    run = {**DATAFLOW, "allow_local_secrets": True}
    assert remote_problems(spec(run, out="/srv/out", key={"env": "KEY"})) == []


@pytest.mark.parametrize(
    ("run", "remote"),
    [
        ({}, False),  # direct: this process
        ({"runner": "portable", "runner_options": {"job_endpoint": "h:1"}}, False),  # LOOPBACK
        (
            {
                "runner": "portable",
                "runner_options": {"job_endpoint": "h:1", "environment_type": "EXTERNAL"},
            },
            True,
        ),
        ({"runner": "flink", "runner_options": {"flink_master": "h:8081"}}, True),
    ],
)
def test_which_runners_have_workers_elsewhere(run, remote):
    assert bool(remote_problems(spec(run))) is remote


def test_validate_and_run_refuse_before_anything_starts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = spec(DATAFLOW)
    assert static_problems(bad)[0].startswith("sinks[0].path: 'out/orders' is relative")
    with pytest.raises(SpecError, match="is relative"):
        run_spec(bad)
    assert list(tmp_path.iterdir()) == []  # nothing claimed, no lineage, no output


def test_profiles_default_to_the_runners_temp_location():
    assert spec(DATAFLOW).run.profile_dir("r1") == "gs://b/t/r1/profiles"


# --------------------------------------------------------------------------- secret parameters


def test_a_template_key_from_a_store_satisfies_the_remote_rules(tmp_path):
    from pipelines.cli import load_target
    from pipelines.remote_rules import remote_problems

    store = "{store: {type: vault, url: 'https://vault.example:8200', name: pseudonym-key}}"
    params = {"output_dir": "gs://bkt/out", "pseudonym_key": store}
    spec = load_target("data_processing", params)
    spec.run.runner, spec.run.runner_options = "dataflow", {"temp_location": "gs://bkt/t"}
    mask = next(step for step in spec.steps if step.name == "mask")
    key = next(f for f in mask.fields if f.field == "customer_id").key
    assert key.store == {
        "type": "vault",
        "url": "https://vault.example:8200",
        "name": "pseudonym-key",
    }
    assert key.file is None
    sources = [p for p in remote_problems(spec) if "secret" in p]
    assert sources == []

    spec = load_target("data_processing", {**params, "pseudonym_key": "env:PSEUDONYM_KEY"})
    spec.run.runner, spec.run.runner_options = "dataflow", {"temp_location": "gs://bkt/t"}
    assert any("an env secret" in p for p in remote_problems(spec))


@pytest.mark.parametrize("given", ["s3cr3t-canary-value", "env:", "{store: {type: vault}}"])
def test_a_secret_parameter_that_is_not_a_reference_is_refused_without_echoing_it(given):
    from pipelines.cli import load_target
    from pipelines.loading import SpecError

    with pytest.raises(SpecError) as err:
        load_target("data_processing", {"pseudonym_key": given})
    assert "parameters.pseudonym_key: the value is not a valid secret" in str(err.value)
    assert "env:VAR, file:/path or {store:" in str(err.value)
    assert "s3cr3t-canary-value" not in str(err.value)
