"""``run.publish: pipeline``: bounded jobs no driver waits for (Flex Templates, detached runs)
publish their own outputs at the end of the job, after the error-threshold check, and a job
over the threshold changes no output: checked here by running the built pipeline with no
driver at all, as a Flex launch does."""

from __future__ import annotations

import json
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from connectors.committer import MANIFEST, STAGING_PREFIX
from connectors.pipeline_publish import ThresholdExceeded
from pipelines.build import build_pipeline
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import run_spec
from tests.stream_specs import orders_stream
from tests.test_output_safety import BAD_EVERY, ROWS, _checksums, _good_outputs, _orders, _spec


def _pipeline_publish(tmp: Path, **overrides: object) -> dict:
    data = _spec(tmp, **overrides)
    data["run"] = {**data["run"], "publish": "pipeline"}
    return data


def _run_without_driver(data: dict, run_id: str) -> None:
    """Build the spec and run the Beam pipeline as a launcher does: submit, nothing after."""
    pipeline = beam.Pipeline(runner=FnApiRunner())
    build_pipeline(spec_from_data(data), pipeline, run_id)
    pipeline.run().wait_until_finish()


def _manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def test_the_job_publishes_its_outputs_when_no_driver_is_left(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    _run_without_driver(_pipeline_publish(tmp_path), "01a23c1a-2945-7fbb-bcd5-7c051ecaa851")
    out = tmp_path / "out"
    lake = _manifest(out / "lake")
    assert lake["run_id"] == "01a23c1a-2945-7fbb-bcd5-7c051ecaa851" and lake["files"]
    rows = sum(pq.read_metadata(out / "lake" / f).num_rows for f in lake["files"])
    assert rows == ROWS - ROWS // BAD_EVERY
    assert (out / "totals.json").is_file()
    dead = _manifest(out / "dead")
    assert sum(1 for f in dead["files"] for _ in (out / "dead" / f).open()) == ROWS // BAD_EVERY
    assert not list(out.rglob(f"{STAGING_PREFIX}*"))


def test_a_job_over_the_threshold_changes_no_output_and_fails(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    run_spec(spec_from_data(_spec(tmp_path)))  # a good earlier run, published by its driver
    out = tmp_path / "out"
    before = _checksums(out)
    _orders(tmp_path / "in" / "a.jsonl", first=1000)
    with pytest.raises(ThresholdExceeded, match="10.00%.*nothing was published"):
        _run_without_driver(_pipeline_publish(tmp_path, run={"error_threshold": 0.05}), "r2")
    after = _checksums(out)
    assert _good_outputs(after) == _good_outputs(before)  # byte for byte
    new_dead = set(after) - set(before)
    assert new_dead and all(name.startswith("dead/") for name in new_dead)  # kept: they say why
    assert not list(out.rglob(f"{STAGING_PREFIX}*"))


def test_a_retried_publish_is_harmless(tmp_path):
    """A runner retries a failed bundle: publishing again must neither fail nor republish."""
    from connectors.pipeline_publish import _PublishAll

    _orders(tmp_path / "in" / "a.jsonl")
    pipeline = beam.Pipeline(runner=FnApiRunner())
    built = build_pipeline(spec_from_data(_spec(tmp_path)), pipeline, "run-retried")
    pipeline.run().wait_until_finish()  # staged only: the driver would publish
    fn = _PublishAll([(s.committer, s.dead_letters) for s in built.committers], 0.2, "safety")
    first = list(fn.process(None, ROWS - 30, 0, 30))
    published = _checksums(tmp_path / "out")
    second = list(fn.process(None, ROWS - 30, 0, 30))
    assert first == second and _checksums(tmp_path / "out") == published
    over = _PublishAll([(s.committer, s.dead_letters) for s in built.committers], 0.05, "safety")
    with pytest.raises(ThresholdExceeded):
        list(over.process(None, ROWS - 30, 0, 30))


def test_a_driver_run_with_pipeline_publishing_reports_the_published_files(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    summary = run_spec(spec_from_data(_pipeline_publish(tmp_path)))
    assert summary.status == "COMPLETE" and summary.published
    lake = next(d for d in summary.outputs if d.node == "lake")
    assert lake.files and all(Path(f).is_file() for f in lake.files)


def test_streaming_specs_keep_publishing_pane_by_pane(tmp_path):
    from apache_beam.options.pipeline_options import PipelineOptions

    spec = orders_stream(tmp_path)
    spec.run.publish = "pipeline"

    pipeline = beam.Pipeline(options=PipelineOptions(streaming=True))
    with pytest.raises(SpecError, match="run.publish: a streaming job publishes pane by pane"):
        build_pipeline(spec, pipeline, "r")
