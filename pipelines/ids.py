"""Run ids: UUIDv7 (time-ordered), as OpenLineage recommends, so runs sort by start time."""

from __future__ import annotations


def new_run_id() -> str:
    """A new UUIDv7 as text."""
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())
