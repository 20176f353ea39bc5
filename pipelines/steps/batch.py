"""The ``batch`` step: GroupIntoBatches-style batches per key, flushed by size or by
buffering time. Rows pass through unchanged (column lineage: identity; the keys are read).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState
from pipelines.registry import Kind
from pipelines.spec_base import StepBase


class BatchStepSpec(StepBase):
    """GroupIntoBatches-style batches per key, flushed by size or by buffering time."""

    type: Literal["batch"]
    key: list[str] = Field(min_length=1)
    batch_size: int = Field(ge=1)
    max_buffering_duration: float | None = Field(default=None, gt=0)


def build(node: BatchStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.batching import BatchByKey

    return rows | node.name >> BatchByKey(
        key_fields=node.key,
        batch_size=node.batch_size,
        max_buffering_duration=node.max_buffering_duration,
        step_name=node.name,
        run_id=ctx.run_id,
    )


def lineage(node: BatchStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    for j, key in enumerate(node.key):
        walk.read(f"{path}.key[{j}]", [key], state)
    return state


KIND = Kind("step", BatchStepSpec, build, lineage=lineage)
