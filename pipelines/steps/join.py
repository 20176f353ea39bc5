"""The ``join`` step: two named inputs joined on key fields, inner or left, per event-time window
(fixed, sliding, session) or in the global window among rows whose lifetimes overlap; bounded
inputs by an Arrow hash join per partition, unbounded ones in keyed state with timers
(:mod:`transforms.join`).

Column lineage: the output columns come from both sides (IDENTITY, named by
:func:`transforms.join_columns.output_columns`), ``window_start``/``window_end`` from the
window; the key fields of both sides are row-level (INDIRECT, JOIN) dependencies, and FILTER
ones too for an inner join (rows without a partner are left out), as are the fields ``where``
reads.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel, StepBase
from pipelines.steps.window import WindowShape


class JoinSideSpec(SpecModel):
    """One input of a join (``left: persons`` is short for ``left: {input: persons}``)."""

    input: Name = Field(description="Source or step name.")
    on: str | list[str] | None = Field(
        default=None, description="This side's key field(s), when they differ from 'on'."
    )
    event_time: str | None = Field(
        default=None, description="Timestamp/date/epoch-millis field; default: element time."
    )
    fields: list[str] | None = Field(default=None, description="Fields to keep (default: all).")
    prefix: str = Field(default="", description="Put before this side's output columns.")
    keep: float | None = Field(
        default=None,
        gt=0,
        description="Global window: seconds after its event time a row waits for partners.",
    )
    keep_until: str | None = Field(
        default=None,
        description="Global window: a timestamp field; the row waits for partners until then "
        "(an auction's 'expires').",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"input": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _one_lifetime(self) -> JoinSideSpec:
        if self.keep is not None and self.keep_until is not None:
            raise ValueError("give 'keep' (seconds) or 'keep_until' (a field), not both")
        return self


class JoinStepSpec(StepBase):
    """Join two inputs on key fields within a window; unmatched rows are counted (or rejected)."""

    type: Literal["join"]
    left: JoinSideSpec
    right: JoinSideSpec
    on: str | list[str] | None = Field(
        default=None, description="Key field(s) with the same names on both sides."
    )
    how: Literal["inner", "left"] = Field(
        default="inner",
        description="inner: only pairs; left: also every left row without a partner (right "
        "columns null). For a right join swap the sides; full joins are not provided.",
    )
    window: WindowShape = Field(
        default_factory=lambda: WindowShape(type="global"),
        description="Pairs form within one window (fixed/sliding/session, event time); "
        "global (default): within the rows' lifetimes (keep/keep_until), else all of them.",
    )
    where: str | None = Field(
        default=None,
        description="A condition on the joined row (its output column names), e.g. "
        "'bid_time < expires and price >= reserve'.",
    )
    unique: Literal["left", "right"] | None = Field(
        default=None,
        description="Global window: this side has at most one row per key (a person, an "
        "auction), so a row of the other side is done once it met it (not kept in state).",
    )
    allowed_lateness: float = Field(default=0.0, ge=0)
    on_unmatched: Literal["drop", "reject"] = Field(
        default="drop",
        description="Rows that joined nothing: drop (counted as filtered) or reject (dead "
        "letters, rule 'unmatched'). A left join's left rows are always emitted.",
    )
    partitions: int = Field(
        default=32, ge=1, le=4096, description="Bounded inputs: hash partitions joined in parallel."
    )

    @field_validator("how", mode="before")
    @classmethod
    def _how(cls, value: Any) -> Any:
        if value == "right":
            raise ValueError("how 'right' is not provided; swap 'left' and 'right' and use left")
        if value in ("full", "outer", "full_outer"):
            raise ValueError(f"how '{value}' is not provided (only inner and left joins)")
        return value

    @model_validator(mode="after")
    def _wiring(self) -> JoinStepSpec:
        if self.input is not None:
            raise ValueError("a join reads its 'left' and 'right' inputs; remove 'input'")
        for side in ("left", "right"):
            if not self.side_keys(side):
                raise ValueError(f"give the key field(s): 'on', or '{side}.on'")
        left, right = self.side_keys("left"), self.side_keys("right")
        if len(left) != len(right):
            raise ValueError(
                f"the keys left.on {left} and right.on {right} need as many fields each"
            )
        if self.window.type != "global":
            for side in ("left", "right"):
                spec = getattr(self, side)
                if spec.keep is not None or spec.keep_until is not None:
                    raise ValueError(
                        f"'{side}.keep' and '{side}.keep_until' apply to the global window; a "
                        f"{self.window.type} window already says how long rows wait "
                        "(or use window: {type: global})"
                    )
            if self.unique:
                raise ValueError("'unique' applies to the global window only")
        return self

    def side_keys(self, side: str) -> list[str]:
        spec: JoinSideSpec = getattr(self, side)
        keys = spec.on if spec.on is not None else self.on
        return [keys] if isinstance(keys, str) else list(keys or [])

    @property
    def inputs(self) -> list[str]:
        """Both inputs, so the wiring checks them and no other step reads them by default."""
        return [self.left.input, self.right.input]

    @property
    def named_inputs(self) -> dict[str, str]:
        """What the builder hands the step: ``{"left": name, "right": name}``."""
        return {"left": self.left.input, "right": self.right.input}


def _side(node: JoinStepSpec, which: str) -> Any:
    from transforms.join import JoinSide

    spec: JoinSideSpec = getattr(node, which)
    return JoinSide(
        name=spec.input,
        keys=tuple(node.side_keys(which)),
        event_time=spec.event_time,
        fields=None if spec.fields is None else tuple(spec.fields),
        prefix=spec.prefix,
        keep=spec.keep,
        keep_until=spec.keep_until,
    )


def build(node: JoinStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.join import Join
    from transforms.windowing import window_fn

    if node.where:
        ctx.check_expression(node.where, f"{path}.where")
    shape = node.window
    try:
        transform = Join(
            left=_side(node, "left"),
            right=_side(node, "right"),
            how=node.how,
            window_fn=window_fn(
                shape.type, size=shape.size, period=shape.period, gap=shape.gap, offset=shape.offset
            ),
            where=node.where,
            unique=node.unique,
            allowed_lateness=node.allowed_lateness,
            on_unmatched=node.on_unmatched,
            step_name=node.name,
            run_id=ctx.run_id,
            partitions=node.partitions,
        )
    except (ValueError, TypeError) as exc:
        raise ctx.fail(f"{path}.window" if "window" in str(exc) else path, str(exc)) from None
    return rows | node.name >> transform


def lineage(node: JoinStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.join_columns import WINDOW_COLUMNS, SideColumns, output_columns

    sides = {}
    for which in ("left", "right"):
        spec: JoinSideSpec = getattr(node, which)
        before = walk.state(spec.input)
        walk.read(f"{path}.{which}.on", node.side_keys(which), before)
        for key in ("event_time", "keep_until"):
            if getattr(spec, key):
                walk.read(f"{path}.{which}.{key}", [getattr(spec, key)], before)
        walk.read(f"{path}.{which}.fields", spec.fields or [], before)
        sides[which] = (spec, before)
    (lspec, lstate), (rspec, rstate) = sides["left"], sides["right"]
    windowed = node.window.type != "global"
    try:
        plans = output_columns(
            SideColumns(lspec.input, tuple(node.side_keys("left")), _fields(lspec), lspec.prefix),
            SideColumns(rspec.input, tuple(node.side_keys("right")), _fields(rspec), rspec.prefix),
            list(lstate.fields),
            list(rstate.fields),
            windowed=windowed,
        )
    except ValueError:
        plans = ([], [])  # the build says so with the real columns
    out = FieldState(
        dataset=[*lstate.dataset, *(o for o in rstate.dataset if o not in lstate.dataset)],
        complete=(lstate.complete or lspec.fields is not None)
        and (rstate.complete or rspec.fields is not None),
    )
    keys = f"{'+'.join(node.side_keys('left'))} = {'+'.join(node.side_keys('right'))}"
    for (spec, before), plan in zip((sides["left"], sides["right"]), plans, strict=True):
        step = Step("DIRECT", "IDENTITY", f"{node.name}: joined from {spec.input} on {keys}")
        for name, column in plan:
            out.fields[column] = [o.then(step) for o in before.fields.get(name, [])]
    if windowed:
        for name in WINDOW_COLUMNS:
            out.fields[name] = []
    join = Step("INDIRECT", "JOIN", f"{node.name}: join on {keys}")
    kinds = [join] + (
        [Step("INDIRECT", "FILTER", f"{node.name}: rows without a partner")]
        if node.how == "inner"
        else []
    )
    for which in ("left", "right"):
        spec, before = sides[which]
        for kind in kinds:
            for key in node.side_keys(which):
                for origin in before.fields.get(key, []):
                    dep = origin.then(kind)
                    if dep not in out.dataset:
                        out.dataset.append(dep)
    if node.where:
        from transforms.expressions import parse

        names = sorted(parse(node.where).fields)
        walk.read(f"{path}.where", names, out)
        depend(out, names, Step("INDIRECT", "FILTER", f"{node.name}: {node.where}"))
    return out


def _fields(spec: JoinSideSpec) -> tuple[str, ...] | None:
    return None if spec.fields is None else tuple(spec.fields)


def expressions(node: JoinStepSpec) -> list[tuple[str, str]]:
    return [("where", node.where)] if node.where else []


KIND = Kind("step", JoinStepSpec, build, lineage=lineage, expressions=expressions, combines=True)
