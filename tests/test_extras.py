"""A node whose optional dependency (a pyproject extra) is missing is refused before anything
runs, with the pip line: one check (pipelines.extras) fed by what each spec model says it needs.

A missing module is simulated the way Python itself marks a blocked import: ``sys.modules[name]
= None`` makes ``import name`` raise ImportError, as it would without the package.
"""

from __future__ import annotations

import sys

import pytest

from pipelines.cli import main
from pipelines.extras import extra_problems
from pipelines.spec import PipelineSpec


def test_document_processing_without_the_documents_extra_is_refused_before_running(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "pypdf", None)
    out = tmp_path / "out"
    assert main(["run", "document_processing", "-p", f"output_dir={out}", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "sources[0]: needs the 'documents' extra (pypdf is not installed)" in err
    assert "pip install 'beamwright[documents]'" in err
    assert not out.exists()  # nothing claimed, nothing written


AWS_PASSWORD = {"store": {"type": "aws", "name": "pg-password"}}
POSTGRES_SINK = {"name": "db", "type": "postgres", "table": "public.t", "key": ["id"]}
POSTGRES_SINK["connection"] = {"host": "h", "database": "d", "user": "u", "password": AWS_PASSWORD}


@pytest.mark.parametrize(
    ("blocked", "changes", "expected"),
    [
        ("boto3", {"sinks": [POSTGRES_SINK]}, "sinks[0].connection.password: needs the 'aws'"),
        ("psycopg", {"sinks": [POSTGRES_SINK]}, "sinks[0].connection: needs the 'postgres'"),
        ("apitools", {"run": {"runner": "dataflow"}}, "run: needs the 'gcp'"),
    ],
)
def test_stores_connections_and_runners_declare_their_extras(
    monkeypatch, blocked, changes, expected
):
    spec = {
        "name": "extras",
        "sources": [{"name": "rows", "type": "file", "path": "in.jsonl"}],
        "sinks": [{"name": "out", "type": "file", "path": "out"}],
        "dead_letter": {"path": "dead"},
        **changes,
    }
    model = PipelineSpec.model_validate(spec)
    assert extra_problems(model) == []
    monkeypatch.setitem(sys.modules, blocked, None)
    problems = extra_problems(model)
    assert len(problems) == 1 and expected in problems[0], problems
