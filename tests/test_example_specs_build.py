"""Every example spec in the repository builds as a Beam graph, bounded as written and, where
a source can be unbounded (Kafka), as the streaming graph Flink or Dataflow would run
(issue 11: "a test builds every example spec both bounded and unbounded"). The examples are
the README's spec blocks and every bundled template with its default parameters."""

from __future__ import annotations

import pytest

import templates
from pipelines import spec as s
from pipelines.checks import build_graph
from pipelines.loading import load_spec, resolve_parameters
from tests.postgres_server import (
    password_in_env,
    postgres_server,  # noqa: F401 - a fixture
)
from tests.test_readme_examples import _sample_workspace, parse_yaml, spec_examples

# templates that read state from PostgreSQL while their graph is built (record_sync's marks)
BUILT_WITH_POSTGRES = {"record_sync"}
PG_PASSWORD_ENV = "BW_TEST_BUILD_PG_PASSWORD"


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
def test_template_builds(name, tmp_path, monkeypatch, request):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PSEUDONYM_KEY", "a-test-key-that-is-long-enough-0123456789")
    template = templates.get_template(name)
    if name not in BUILT_WITH_POSTGRES:
        _build_both(template.expand(resolve_parameters(template.parameters, {})))
        return
    server = request.getfixturevalue("postgres_server")
    values = {
        "postgres": f"{server.user}@{server.host}:{server.port}/{server.dbname}",
        "postgres_password": f"env:{PG_PASSWORD_ENV}",
    }
    with password_in_env(server, PG_PASSWORD_ENV):
        _build_both(template.expand(resolve_parameters(template.parameters, values)))
