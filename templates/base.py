"""What a business template is: typed parameters plus an expansion into a pipeline spec.

A template never builds Beam objects; it only writes a :class:`pipelines.spec.PipelineSpec`.
Parameter values arrive already typed and checked (the CLI resolves them with
:func:`pipelines.loading.resolve_parameters`), so ``expand`` only has to make decisions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pipelines.spec import ParameterSpec, PipelineSpec

SAMPLE_DATA = Path(__file__).parent / "sample_data"


class Template(Protocol):
    name: str
    version: str
    description: str
    parameters: Mapping[str, ParameterSpec]

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec: ...


def rejections_report(name: str, path: str) -> dict[str, Any]:
    """A report sink counting the run's dead letters by step and rule, as CSV at ``path``:
    the first place to look when rows go missing, the same in every template."""
    return {
        "name": name,
        "type": "report",
        "input": "dead_letters",
        "path": path,
        "group_by": ["step", "rule"],
        "metrics": {"rows": "count"},
    }


def postgres_connection(text: str, password: str, where: str) -> dict[str, Any]:
    """The ``connection`` of a ``postgres`` step or sink from ``user@host[:port]/database``
    (port 5432 unless given), with ``password``, a secret reference, when there is one: the
    password is never part of the address, so that it is not written into the spec. ``where``
    names the parameter in the error. A ':' in the user name is refused: ``user:secret@...``
    would carry a password into the spec, its lineage and its logs."""
    match = re.fullmatch(r"([^@/:\s]+)@([^:/\s]+)(?::(\d+))?/([^/\s]+)", text)
    if match is None:
        raise ValueError(
            f"{where}: write user@host:port/database (no password: give it as "
            "postgres_password, a secret reference)"
        )
    name, host, port, database = match.groups()
    connection: dict[str, Any] = {
        "host": host,
        "port": int(port or 5432),
        "database": database,
        "user": name,
    }
    if password:
        connection["password"] = password
    return connection


def pipeline_spec(
    template: Template,
    values: Mapping[str, Any],
    *,
    owner: str,
    sources: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    sinks: list[dict[str, Any]],
    dead_letter: dict[str, Any],
    governance: dict[str, Any],
) -> PipelineSpec:
    """The spec a template expands to: named after ``template`` and stamped with its version
    (so a run says which template wrote it), run settings from the ``batch_size`` and
    ``error_threshold`` parameters every template has, and the lineage event log under
    ``output_dir``; the rest is the template's own."""
    out = values["output_dir"].rstrip("/")
    data = {
        "name": template.name,
        "description": template.description,
        "template": f"{template.name}@{template.version}",
        "owner": owner,
        "run": {
            "batch_size": values["batch_size"],
            "error_threshold": values["error_threshold"],
        },
        "sources": sources,
        "steps": steps,
        "sinks": sinks,
        "dead_letter": dead_letter,
        "lineage": {"event_log": f"{out}/lineage/events.jsonl"},
        "governance": governance,
    }
    return PipelineSpec.model_validate(data)
