"""Identities: run ids (UUIDv7, time-ordered, as OpenLineage recommends, so runs sort by start
time) and the version of beamwright (read from the installed package, written once in
pyproject.toml; looked up only when asked for, since importlib.metadata costs ~60 ms)."""

from __future__ import annotations

import re


def job_name(pipeline: str) -> str:
    """A runner-safe job name for a pipeline (Dataflow wants lowercase letters, digits and
    dashes)."""
    return re.sub(r"[^a-z0-9-]", "-", pipeline.lower()).strip("-") or "beamwright"


def new_run_id() -> str:
    """A new UUIDv7 as text."""
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())


def beamwright_version() -> str:
    """The installed beamwright's version (``0+unknown`` in a source tree never installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("beamwright")
    except PackageNotFoundError:
        return "0+unknown"
