"""Runner options from the command line (issue 12, "Runner options everywhere"): ``--option
key=value`` typed as YAML reads it, standard Beam flags after ``--`` typed by Beam's own
parsers, both over ``run.runner_options``, and one place that makes PipelineOptions of them."""

from __future__ import annotations

import json

import pytest
from apache_beam.options.pipeline_options import TestOptions, WorkerOptions

from pipelines.cli import main
from pipelines.runners import (
    RunnerConfigError,
    beam_flags,
    option_overrides,
    pipeline_options,
    typed_option,
)
from pipelines.spec import RunSettings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("dry_run=true", ("dry_run", True)),
        ("max_num_workers=4", ("max_num_workers", 4)),
        ("experiments=[use_runner_v2, enable_streaming_engine]",
         ("experiments", ["use_runner_v2", "enable_streaming_engine"])),
        ("region=europe-west1", ("region", "europe-west1")),
        ("labels={team: data}", ("labels", {"team": "data"})),
        ("environment_config=", ("environment_config", "")),
    ],
)
def test_option_values_are_typed(text, expected):
    assert typed_option(text) == expected


def test_an_option_without_a_value_is_refused():
    with pytest.raises(RunnerConfigError, match="expected key=value"):
        typed_option("dry_run")


def test_boolean_runner_options_reach_beam_typed():
    """``runner_options: {dry_run: true}`` used to become a bare ``--dry_run`` flag, which
    Beam's argparse refuses."""
    settings = RunSettings(runner_options={"dry_run": True, "max_num_workers": 3})
    options = pipeline_options(settings, "job")
    assert options.view_as(TestOptions).dry_run is True
    assert options.view_as(WorkerOptions).max_num_workers == 3


def test_beam_flags_are_typed_by_beams_parsers_and_unknown_ones_refused():
    assert beam_flags(["--project=p", "--streaming", "--max_num_workers=3"]) == {
        "project": "p",
        "streaming": True,
        "max_num_workers": 3,
    }
    with pytest.raises(RunnerConfigError, match="not a Beam pipeline option") as caught:
        beam_flags(["--projet=p"])
    assert caught.value.hint == "did you mean --project?"


def test_flags_after_the_separator_win_over_option_pairs():
    assert option_overrides(["region=a", "project=x"], ["--region=b"]) == {
        "region": "b",
        "project": "x",
    }


def test_plan_takes_options_and_beam_flags(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "job.json"
    code = main(
        ["plan", "data_processing", "--option", "project=my-proj", "--out", str(out),
         "--", "--region=europe-west4", "--temp_location=gs://bucket/tmp"]
    )
    assert code == 0, capsys.readouterr().err
    job = json.loads(out.read_text())
    options = job["job"]["environment"]["sdkPipelineOptions"]["options"]
    assert (options["project"], options["region"]) == ("my-proj", "europe-west4")
    assert "placeholders" not in capsys.readouterr().out


def test_beam_flags_are_only_for_run_and_plan(capsys):
    assert main(["validate", "data_processing", "--", "--project=p"]) == 2
    assert "for run and plan only" in capsys.readouterr().err


def test_a_runner_without_its_required_option_says_which(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "data_processing", "--runner", "portable", "-q"]) == 2
    assert "needs job_endpoint" in capsys.readouterr().err


def test_the_flink_profile_gives_beams_flink_runner_its_options():
    """The Flink job-server jar is a download (not reachable here), so the profile is checked
    by what Beam's FlinkRunner would read from the options."""
    from apache_beam.options.pipeline_options import (
        FlinkRunnerOptions,
        PortableOptions,
        StandardOptions,
    )

    settings = RunSettings(
        runner="flink",
        runner_options={
            "flink_master": "flink-jobmanager:8081",
            "flink_version": "1.18",
            "flink_submit_uber_jar": True,
            "parallelism": 4,
            "environment_type": "EXTERNAL",
            "environment_config": "localhost:50000",
        },
    )
    options = pipeline_options(settings, "orders")
    flink = options.view_as(FlinkRunnerOptions)
    assert options.view_as(StandardOptions).runner == "FlinkRunner"
    assert (flink.flink_master, flink.flink_version) == ("flink-jobmanager:8081", "1.18")
    assert flink.flink_submit_uber_jar is True and flink.parallelism == 4
    portable = options.view_as(PortableOptions)
    assert (portable.environment_type, portable.environment_config) == (
        "EXTERNAL",
        "localhost:50000",
    )
    with pytest.raises(RunnerConfigError, match="needs flink_master"):
        pipeline_options(RunSettings(runner="flink"), "orders")
