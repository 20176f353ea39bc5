"""The ``lookup`` step: enrich rows from a lookup source (a side input), joined on key fields.

Column lineage: added fields come from the lookup source (IDENTITY, or TRANSFORMATION when
cast); the join keys of both sides are row-level (INDIRECT, JOIN) dependencies, and a FILTER
one too when rows without a match are rejected or dropped.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import FieldType, Name, StepBase


class LookupStepSpec(StepBase):
    """Enrich rows from a lookup source (a side input), joined on key fields."""

    type: Literal["lookup"]
    lookup: Name = Field(description="Name of the source that holds the reference data.")
    on: str | list[str] = Field(description="Key field(s), present in both inputs.")
    fields: list[str] | None = Field(
        default=None, description="Lookup fields to add (default: all but the keys)."
    )
    prefix: str = ""
    cast: dict[str, FieldType] = Field(
        default_factory=dict,
        description="Types for lookup fields (CSV reference data arrives as text); values "
        "that do not cast become null and are counted.",
    )
    on_missing: Literal["keep", "reject", "drop"] = Field(
        default="keep",
        description="keep: add nulls; reject: dead-letter the row; drop: count as filtered.",
    )

    @property
    def keys(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


def build(node: LookupStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.lookup import Lookup

    return rows | node.name >> Lookup(
        ctx.outputs[node.lookup],
        step_name=node.name,
        run_id=ctx.run_id,
        keys=node.keys,
        fields=node.fields,
        prefix=node.prefix,
        cast=node.cast,
        on_missing=node.on_missing,
    )


def lineage(node: LookupStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    lookup = walk.state(node.lookup)
    out = state.copy()
    walk.read(f"{path}.on", node.keys, state)
    walk.read(f"{path}.on (in {node.lookup})", node.keys, lookup)
    for j, name in enumerate(node.fields or []):
        walk.read(f"{path}.fields[{j}]", [name], lookup)
    for name in node.cast:
        walk.read(f"{path}.cast.{name}", [name], lookup)
    if node.fields is None and not lookup.complete:
        out.complete = False  # it adds every lookup field, and those are not all known
    wanted = node.fields or [f for f in lookup.fields if f not in node.keys]
    for name in wanted:
        kind = "TRANSFORMATION" if name in node.cast else "IDENTITY"
        step = Step("DIRECT", kind, f"looked up from {node.lookup} on {'+'.join(node.keys)}")
        out.fields[node.prefix + name] = [o.then(step) for o in lookup.fields.get(name, [])]
    join = Step("INDIRECT", "JOIN", f"{node.name}: join on {'+'.join(node.keys)}")
    depend(out, node.keys, join)
    for key in node.keys:
        for origin in lookup.fields.get(key, []):
            dep = origin.then(join)
            if dep not in out.dataset:
                out.dataset.append(dep)
    if node.on_missing != "keep":
        depend(out, node.keys, Step("INDIRECT", "FILTER", f"{node.name}: rows without a match"))
    return out


def side_inputs(node: LookupStepSpec) -> list[str]:
    return [node.lookup]


KIND = Kind("step", LookupStepSpec, build, lineage=lineage, side_inputs=side_inputs)
