"""The ``map`` step: rename, cast, derive (safe expressions), drop, select — in that order.

Column lineage: renames and identity derivations keep origins (IDENTITY); casts and computed
fields are DIRECT TRANSFORMATIONs of the fields they read; fields read only in conditions
(``if(...)``'s test) are INDIRECT CONDITIONAL; ``select`` fixes the exact field set.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Origin, Step
from pipelines.registry import Kind
from pipelines.spec_base import FieldType, StepBase


class MapStepSpec(StepBase):
    """Reshape rows: rename, cast, derive (safe expressions), drop, select — in that order."""

    type: Literal["map"]
    rename: dict[str, str] = Field(default_factory=dict)
    cast: dict[str, FieldType] = Field(default_factory=dict)
    derive: dict[str, str] = Field(
        default_factory=dict, description="New or replaced field -> expression."
    )
    drop: list[str] = Field(default_factory=list)
    select: list[str] | None = None


def build(node: MapStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.map import MapRows

    for name, text in node.derive.items():
        ctx.check_expression(text, f"{path}.derive.{name}")
    return rows | node.name >> MapRows(
        step_name=node.name,
        run_id=ctx.run_id,
        rename=node.rename,
        cast=node.cast,
        derive=node.derive,
        drop=node.drop,
        select=node.select,
    )


def lineage(node: MapStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    for old in node.rename:
        walk.read(f"{path}.rename.{old}", [old], state)
    if node.rename:
        out.fields = {node.rename.get(k, k): v for k, v in out.fields.items()}
    for name, type_name in node.cast.items():
        walk.read(f"{path}.cast.{name}", [name], out)
        step = Step("DIRECT", "TRANSFORMATION", f"cast to {type_name}")
        out.fields[name] = [o.then(step) for o in out.fields.get(name, [])]
    before = {k: list(v) for k, v in out.fields.items()}
    derive_input = out.copy()
    for name, text in node.derive.items():
        expr = parse(text)
        walk.read(f"{path}.derive.{name}", sorted(expr.fields), derive_input)
        if expr.identity_field is not None:
            step = Step("DIRECT", "IDENTITY", f"{name} = {text}")
            out.fields[name] = [o.then(step) for o in before.get(expr.identity_field, [])]
            continue
        origins: list[Origin] = []
        direct = Step("DIRECT", "TRANSFORMATION", f"{name} = {text}")
        for f in sorted(expr.direct_fields):
            origins += [o.then(direct) for o in before.get(f.split(".")[0], [])]
        indirect = Step("INDIRECT", "CONDITIONAL", f"{name} = {text}")
        for f in sorted(expr.indirect_fields):
            origins += [o.then(indirect) for o in before.get(f.split(".")[0], [])]
        out.fields[name] = origins
    for j, name in enumerate(node.drop):
        walk.read(f"{path}.drop[{j}]", [name], out)
    for name in node.drop:
        out.fields.pop(name, None)
    if node.select is not None:
        for j, name in enumerate(node.select):
            walk.read(f"{path}.select[{j}]", [name], out)
        out.fields = {k: out.fields.get(k, []) for k in node.select}
        out.complete = True
    return out


def expressions(node: MapStepSpec) -> list[tuple[str, str]]:
    return [(f"derive.{name}", text) for name, text in node.derive.items()]


KIND = Kind("step", MapStepSpec, build, lineage=lineage, expressions=expressions)
