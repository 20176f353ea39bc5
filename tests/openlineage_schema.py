"""Validate OpenLineage events offline against the official JSON Schemas in ../shared.

The core schema checks facets only as BaseFacet, so every facet is validated again against
the schema its ``_schemaURL`` names (the file whose name is the URL's last path segment), and
beamwright's custom facet against the schema the project ships.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parents[1]
SPEC_DIR = ROOT.parent / "shared" / "openlineage-spec"
OWN_SCHEMAS = ROOT / "lineage" / "schemas"


@lru_cache(maxsize=1)
def _registry() -> tuple[Registry, dict[str, dict]]:
    by_file: dict[str, dict] = {}
    resources = []
    for path in [
        SPEC_DIR / "OpenLineage.json",
        *sorted((SPEC_DIR / "facets").glob("*.json")),
        *sorted(OWN_SCHEMAS.glob("*.json")),
    ]:
        schema = json.loads(path.read_text())
        by_file[path.name] = schema
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources), by_file


def available() -> bool:
    return (SPEC_DIR / "OpenLineage.json").is_file()


def _facet_problems(facet: dict[str, Any], where: str) -> list[str]:
    registry, by_file = _registry()
    url = facet.get("_schemaURL", "")
    file_name, _, pointer = url.partition("#")
    file_name = file_name.rsplit("/", 1)[-1]
    schema = by_file.get(file_name)
    if schema is None:
        return [f"{where}: no schema file for _schemaURL {url!r}"]
    definition = {"$ref": f"{schema['$id']}#{pointer}"} if pointer else schema
    validator = Draft202012Validator(definition, registry=registry)
    return [
        f"{where}: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(facet)
    ]


def event_problems(event: dict[str, Any]) -> list[str]:
    """Every schema violation of ``event`` and of each of its facets; empty when valid.

    Skips the calling test when the shared schemas are not beside the checkout (CI and the
    development machines have them at ``../shared``)."""
    if not available():
        import pytest

        pytest.skip(f"OpenLineage schemas not found at {SPEC_DIR}")
    registry, by_file = _registry()
    core = Draft202012Validator(by_file["OpenLineage.json"], registry=registry)
    problems = [f"event: {e.message} at {list(e.absolute_path)}" for e in core.iter_errors(event)]
    for kind in ("run", "job"):
        for name, facet in (event.get(kind, {}).get("facets") or {}).items():
            problems += _facet_problems(facet, f"{kind}.facets.{name}")
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        for i, ds in enumerate(event.get(side) or []):
            for group in ("facets", extra):
                for name, facet in (ds.get(group) or {}).items():
                    problems += _facet_problems(facet, f"{side}[{i}].{group}.{name}")
    return problems
