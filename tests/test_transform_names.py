"""Transform names are the graph's identity for Dataflow update and Flink savepoints, which map
state by name: the main job's names are pinned in a golden file, and no name, in the main job
or in a streaming graph, may carry what changes with a Python class rename or a Beam upgrade."""

from __future__ import annotations

import os
import re
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from connectors.names import CombineGlobally
from pipelines.build import build_pipeline
from pipelines.checks import build_graph
from pipelines.cli import load_target
from tests.stream_specs import orders_stream

GOLDEN = Path(__file__).parent / "data" / "main_job_transform_names.txt"
UPDATE = "BEAMWRIGHT_UPDATE_GOLDEN"
# a lambda's label, an object's repr, a source position, one of our private classes
UNSTABLE = re.compile(r"<lambda|at 0x|\.py:|\(_")


def transform_names(pipeline: beam.Pipeline) -> list[str]:
    """Every transform's unique name, outer and inner, sorted; without the synthetic root
    Beam adds (named after its proto id, it is no transform a runner maps)."""
    proto = pipeline.to_runner_api()
    roots = set(proto.root_transform_ids)
    return sorted(
        t.unique_name for tid, t in proto.components.transforms.items() if tid not in roots
    )


@pytest.fixture(scope="module")
def main_job_names(tmp_path_factory) -> list[str]:
    """The bundled template with its default parameters (paths moved under a temp dir, which
    no name depends on), built as ``beamwright run`` builds it, not run."""
    tmp = tmp_path_factory.mktemp("names")
    spec = load_target(
        "data_processing",
        {"output_dir": str(tmp / "out"), "pseudonym_key_file": str(tmp / "pseudonym.key")},
    )
    pipeline = beam.Pipeline(runner="FnApiRunner")
    build_pipeline(spec, pipeline, "names")
    return transform_names(pipeline)


def test_main_job_transform_names_match_the_golden_file(main_job_names):
    text = "\n".join(main_job_names) + "\n"
    if os.environ.get(UPDATE) == "1":
        GOLDEN.write_text(text)
    expected = GOLDEN.read_text() if GOLDEN.exists() else ""
    assert text == expected, (
        f"the main job's transform names changed; a running Dataflow job can then only be "
        f"updated with --transform_name_mapping (see README). If the change is intended, "
        f"regenerate tests/data/{GOLDEN.name} with "
        f"{UPDATE}=1 .venv/bin/python -m pytest -q tests/test_transform_names.py "
        f"and review its diff"
    )


def test_main_job_names_are_stable(main_job_names):
    assert [name for name in main_job_names if UNSTABLE.search(name)] == []


def _streaming_spec(tmp_path: Path):
    """The shared streaming spec plus a report sink: the transforms only a streaming graph
    has (panes, lateness gate, Kafka reads and writes, per-window reports)."""
    report = {
        "name": "totals",
        "type": "report",
        "path": str(tmp_path / "totals.json"),
        "input": "typed",
        "group_by": ["country"],
        "metrics": {"orders": "count"},
    }
    return orders_stream(tmp_path, extra_sinks=[report])


def test_streaming_graph_names_are_stable(tmp_path):
    names = transform_names(build_graph(_streaming_spec(tmp_path), streaming=True).pipeline)
    assert "orders/Read/Read" in names and "warehouse/WritePanes/WritePane" in names
    assert [name for name in names if UNSTABLE.search(name)] == []


@pytest.mark.parametrize("values, expected", [([], [0]), ([1, 2, 3], [3])])
def test_combine_globally_gives_one_value_and_the_default_for_no_input(values, expected):
    """Our CombineGlobally keeps Beam's behaviour: one value, the CombineFn's for no input
    when the input is empty (a report of no rows, an empty list of written files)."""
    with beam.Pipeline(runner="FnApiRunner") as pipeline:
        items = pipeline | beam.Create(values, reshuffle=False).with_output_types(int)
        assert_that(items | CombineGlobally(beam.combiners.CountCombineFn()), equal_to(expected))
