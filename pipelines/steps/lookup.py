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
    refresh: float | None = Field(
        default=None,
        gt=0,
        description="Streaming jobs: re-read the lookup's files every this many seconds and "
        "join with the newest version (a file source; the version used is in lineage). "
        "Batch runs read the reference once, at their start.",
    )

    @property
    def keys(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


def build(node: LookupStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from apache_beam.options.pipeline_options import StandardOptions

    from transforms.lookup import Lookup

    reference = ctx.outputs[node.lookup]
    refreshed = bool(node.refresh) and ctx.pipeline.options.view_as(StandardOptions).streaming
    if refreshed:
        reference = _refreshed_reference(node, ctx, path)
    return rows | node.name >> Lookup(
        reference,
        refreshed=refreshed,
        step_name=node.name,
        run_id=ctx.run_id,
        keys=node.keys,
        fields=node.fields,
        prefix=node.prefix,
        cast=node.cast,
        on_missing=node.on_missing,
    )


def _refreshed_reference(node: LookupStepSpec, ctx: Any, path: str) -> Any:
    """The lookup source's files re-read every ``refresh`` seconds (a streaming job)."""
    from connectors.files.registry import infer_format
    from transforms.reference_refresh import RefreshReference

    source = next((src for src in ctx.spec.sources if src.name == node.lookup), None)
    dataset = next((d for d in ctx.inputs if d.node == node.lookup), None)
    if source is None or source.type != "file" or dataset is None or not dataset.files:
        raise ctx.fail(
            f"{path}.refresh",
            f"'{node.lookup}' is not a file source with files; refresh re-reads files "
            "(hint: read the reference from files, or drop refresh)",
        )
    return ctx.pipeline | f"{node.name}/Refresh" >> RefreshReference(
        step=node.name,
        paths=dataset.files,
        fmt=source.format or infer_format(dataset.files[0]),
        options=source.options,
        refresh=node.refresh,
        batch_size=ctx.spec.run.batch_size,
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
