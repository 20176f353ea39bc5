"""Every example spec in the repository builds as a Beam graph, bounded as written and, where
a source can be unbounded (Kafka), as the streaming graph Flink or Dataflow would run
(issue 11: "a test builds every example spec both bounded and unbounded"). The examples are
the README's spec blocks and every bundled template with its default parameters. Building
never touches a data store: record_sync, whose marks live in PostgreSQL, translates with its
server's address on a closed port."""

from __future__ import annotations

import socket

import pytest

import templates
from pipelines import spec as s
from pipelines.checks import build_graph
from pipelines.loading import load_spec, resolve_parameters
from tests.test_readme_examples import _sample_workspace, parse_yaml, spec_examples


def _build_both(spec: s.PipelineSpec) -> list[bool]:
    """Build ``spec`` as written and, when it can be unbounded, as a streaming graph; return
    the ``streaming`` option of each graph built."""
    from apache_beam.options.pipeline_options import StandardOptions

    graphs = [build_graph(spec, streaming=False)]
    if s.unbounded_sources(spec):
        graphs.append(build_graph(spec, streaming=True))
    return [g.pipeline.options.view_as(StandardOptions).streaming for g in graphs]


@pytest.mark.parametrize("text", spec_examples(), ids=lambda t: parse_yaml(t)["name"])
def test_readme_example_builds_bounded_and_unbounded(text, tmp_path, monkeypatch):
    _sample_workspace(tmp_path, monkeypatch)
    (tmp_path / "example.yaml").write_text(text)
    spec = load_spec("example.yaml")
    modes = _build_both(spec)
    assert modes == ([False, True] if s.unbounded_sources(spec) else [False])


def test_the_readme_has_an_example_with_a_kafka_source():
    assert [t for t in spec_examples() if "type: kafka" in t], "the README lost its Kafka example"


@pytest.mark.parametrize("name", templates.names())
def test_template_builds(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PSEUDONYM_KEY", "a-test-key-that-is-long-enough-0123456789")
    template = templates.get_template(name)
    _build_both(template.expand(resolve_parameters(template.parameters, {})))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_record_sync_translates_without_its_database(tmp_path, monkeypatch):
    """The sync's marks are read when the pipeline runs: with PostgreSQL unreachable, the
    two-way sync (both source kinds that keep marks) is built and translated (reading the
    marks at build time failed here after the connection retries)."""
    from pipelines.plan import translate

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BW_TEST_CLOSED_PG_PASSWORD", "never-sent")
    template = templates.get_template("record_sync")
    given = {
        "direction": "both",
        "postgres": f"sync@127.0.0.1:{_closed_port()}/nowhere",
        "postgres_password": "env:BW_TEST_CLOSED_PG_PASSWORD",
    }
    spec = template.expand(resolve_parameters(template.parameters, given))
    inputs = {step["name"]: step["inputs"] for step in translate(spec, "portable")["steps"]}
    # each side's read follows the step reading its committed mark
    assert inputs["db_changes"] == ["db_changes/CommittedMark/Read"]
    assert inputs["api_changes/Endpoint"] == ["api_changes/CommittedMark/Read"]
