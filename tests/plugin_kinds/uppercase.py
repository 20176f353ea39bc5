"""A step kind from outside the product: ``uppercase`` upper-cases text fields.

It is what a plugin author writes: a model, a build() that applies a batch processor with the
project's ArrowStep (so it counts and dead-letters like every step), and a lineage rule. One
module, registered by ``plugins: [tests.plugin_kinds.uppercase]`` in a spec.
"""

from __future__ import annotations

from typing import Any, Literal

from lineage.columns import FieldState, Step
from pipelines.registry import Kind
from pipelines.spec_base import StepBase


class UppercaseStepSpec(StepBase):
    type: Literal["uppercase"]
    fields: list[str]


class UppercaseProcessor:
    def __init__(self, fields: list[str]) -> None:
        self.fields = fields

    def setup(self) -> None:
        pass

    def process(self, table: Any) -> Any:
        import pyarrow.compute as pc

        from transforms.step import StepResult

        for name in self.fields:
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.utf8_upper(table.column(i)))
        return StepResult(table)


def build(node: UppercaseStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.step import ArrowStep

    return rows | ArrowStep(UppercaseProcessor(node.fields), step_name=node.name)


def lineage(node: UppercaseStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    for j, name in enumerate(node.fields):
        walk.read(f"{path}.fields[{j}]", [name], state)
        step = Step("DIRECT", "TRANSFORMATION", "upper-cased")
        out.fields[name] = [o.then(step) for o in out.fields.get(name, [])]
    return out


KIND = Kind("step", UppercaseStepSpec, build, lineage=lineage)
