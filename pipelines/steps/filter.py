"""The ``filter`` step: keep rows where a safe expression is true; the others are counted as
filtered (not rejected: they are not errors).

Column lineage: every field the predicate reads is a row-level (INDIRECT, FILTER) dependency.
"""

from __future__ import annotations

from typing import Any, Literal

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import StepBase


class FilterStepSpec(StepBase):
    """Keep rows where ``where`` is true; the others are counted as filtered (not rejected)."""

    type: Literal["filter"]
    where: str


def build(node: FilterStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.filter import FilterRows

    ctx.check_expression(node.where, f"{path}.where")
    return rows | node.name >> FilterRows(where=node.where, step_name=node.name)


def lineage(node: FilterStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    names = parse(node.where).fields
    walk.read(f"{path}.where", sorted(names), state)
    depend(out, names, Step("INDIRECT", "FILTER", f"{node.name}: {node.where}"))
    return out


def expressions(node: FilterStepSpec) -> list[tuple[str, str]]:
    return [("where", node.where)]


KIND = Kind("step", FilterStepSpec, build, lineage=lineage, expressions=expressions)
