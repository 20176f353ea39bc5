"""Kinds and templates from outside the product: one module and one registration each.

A step kind defined in ``tests/`` is validated, built, run and followed by column lineage like
a built-in; a plugin package installed with pip brings a step kind and a template through
entry points, and the CLI uses both without being told about them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines.loading import SpecError, spec_from_data
from pipelines.run import run_spec

ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path: Path, **step: object) -> dict:
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "name": f"ada {i}"}) + "\n" for i in range(5))
    )
    return {
        "name": "plugged",
        "plugins": ["tests.plugin_kinds.uppercase"],
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        "sources": [{"type": "file", "name": "people", "path": str(tmp_path / "in.jsonl")}],
        "steps": [{"type": "uppercase", "name": "shout", "fields": ["name"], **step}],
        "sinks": [{"type": "file", "name": "out", "path": str(tmp_path / "out")}],
        "dead_letter": {"path": str(tmp_path / "dead")},
    }


def test_a_kind_from_tests_is_validated_built_run_and_in_column_lineage(tmp_path):
    summary = run_spec(spec_from_data(_spec(tmp_path)))
    assert summary.node("shout").rows_in == summary.node("shout").rows_out == 5
    (part,) = (tmp_path / "out").glob("part-*.parquet")
    assert pq.read_table(part).column("name").to_pylist() == [f"ADA {i}" for i in range(5)]
    complete = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[-1])
    (output,) = [o for o in complete["outputs"] if o["name"].endswith("out")]
    name_lineage = output["facets"]["columnLineage"]["fields"]["name"]["inputFields"]
    transformations = [t for f in name_lineage for t in f["transformations"]]
    assert {"type": "DIRECT", "subtype": "TRANSFORMATION", "description": "upper-cased"} in [
        {k: t[k] for k in ("type", "subtype", "description")} for t in transformations
    ]


def test_a_plugin_kind_is_checked_like_a_built_in(tmp_path):
    with pytest.raises(SpecError, match=r"steps\[0\]: unknown key 'feilds'; did you mean 'fields'"):
        spec_from_data(_spec(tmp_path, feilds=["x"]))
    data = _spec(tmp_path)
    data["plugins"] = ["tests.plugin_kinds.nothing_here"]
    with pytest.raises(SpecError, match=r"plugins\[0\]: cannot import kind module"):
        spec_from_data(data)


def test_validate_checks_the_fields_a_plugin_kind_names(tmp_path):
    from pipelines.checks import field_problems

    data = _spec(tmp_path, fields=["nmae"])
    data["steps"].insert(
        0,
        {
            "type": "validate",
            "name": "check",
            "fields": {"id": {"type": "int64"}, "name": {"type": "string"}},
            "additional_fields": "drop",
        },
    )
    spec = spec_from_data(data)
    (problem,) = field_problems(spec, {"people": None})
    assert problem == "steps[1].fields[0]: unknown field 'nmae'; did you mean 'name'?"


PLUGIN = {
    "pyproject.toml": """
        [build-system]
        requires = ["setuptools>=61"]  # PEP 621; what a fresh venv brings
        build-backend = "setuptools.build_meta"

        [project]
        name = "bw-reverse-plugin"
        version = "0.1.0"

        [project.entry-points."beamwright.steps"]
        reverse = "bw_reverse.kind"

        [project.entry-points."beamwright.templates"]
        reversed_names = "bw_reverse.template"
    """,
    "bw_reverse/__init__.py": "",
    "bw_reverse/kind.py": """
        from typing import Any, Literal

        from pipelines.registry import Kind
        from pipelines.spec_base import StepBase


        class ReverseSpec(StepBase):
            type: Literal["reverse"]
            field: str


        class Reverse:
            def __init__(self, field):
                self.field = field

            def setup(self):
                pass

            def process(self, table):
                import pyarrow.compute as pc
                from transforms.step import StepResult

                i = table.column_names.index(self.field)
                return StepResult(table.set_column(i, self.field, pc.utf8_reverse(table.column(i))))


        def build(node, ctx, path, rows):
            from transforms.step import ArrowStep

            return rows | ArrowStep(Reverse(node.field), step_name=node.name)


        KIND = Kind("step", ReverseSpec, build)
    """,
    "bw_reverse/template.py": """
        from pipelines.spec import ParameterSpec, PipelineSpec


        class ReversedNames:
            name = "reversed_names"
            version = "1"
            description = "Reverse every name (a template from a plugin package)."
            parameters = {"input": ParameterSpec(type="string", required=True)}

            def expand(self, values):
                return PipelineSpec.model_validate({
                    "name": "reversed_names",
                    "lineage": {"enabled": False},
                    "sources": [{"type": "file", "name": "people", "path": values["input"]}],
                    "steps": [{"type": "reverse", "name": "flip", "field": "name"}],
                    "sinks": [{"type": "file", "name": "out", "path": "out", "format": "jsonl"}],
                    "dead_letter": {"path": "dead"},
                })


        TEMPLATE = ReversedNames()
    """,
}


@pytest.mark.slow
def test_a_pip_installed_plugin_package_brings_a_kind_and_a_template(tmp_path):
    package = tmp_path / "plugin"
    for name, text in PLUGIN.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text).lstrip())
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"}
    cli = [sys.executable, "-m", "pipelines.cli"]
    listing = subprocess.run([*cli, "templates", "list"], env=env, capture_output=True, text=True)
    assert "reversed_names" in listing.stdout, listing.stderr
    (tmp_path / "people.jsonl").write_text('{"name": "ada"}\n{"name": "grace"}\n')
    done = subprocess.run(
        [*cli, "run", "reversed_names", "-p", f"input={tmp_path / 'people.jsonl'}", "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (part,) = (tmp_path / "out").glob("part-*.jsonl")
    assert [json.loads(line)["name"] for line in part.read_text().splitlines()] == ["ada", "ecarg"]
