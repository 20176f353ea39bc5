"""The ``dedupe`` step: one row per key across the whole bounded input (the earliest by source
position); the others go to the dead letters with rule ``duplicate``, naming the row kept.
See :mod:`transforms.dedupe`. The ``unique`` validate rule is the per-batch, streaming-safe
variant.

Column lineage: rows pass through; the key fields decide which (INDIRECT, FILTER).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import StepBase


class DedupeStepSpec(StepBase):
    """At most one row per key in the whole input; the later duplicates are dead-lettered."""

    type: Literal["dedupe"]
    on: list[str] = Field(min_length=1, description="The fields that identify a row.")


def build(node: DedupeStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from connectors.panes import is_streaming
    from transforms.dedupe import Dedupe

    if is_streaming(rows):
        raise ctx.fail(
            path,
            "dedupe needs a bounded input (its combine over an unbounded one never fires); "
            "use a validate step's 'unique' rule (per batch) in streaming specs",
        )
    return rows | node.name >> Dedupe(node.on, step_name=node.name, run_id=ctx.run_id)


def lineage(node: DedupeStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    walk.read(f"{path}.on", node.on, state)
    depend(out, set(node.on), Step("INDIRECT", "FILTER", f"{node.name}: one row per {node.on}"))
    return out


KIND = Kind("step", DedupeStepSpec, build, lineage=lineage)
