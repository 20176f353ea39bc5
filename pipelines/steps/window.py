"""The ``window`` step: event-time windows with triggers and lateness, aggregated per key;
late rows go to the dead letters (rule ``late``) instead of vanishing as in plain Beam.

Column lineage: like a report — group keys (IDENTITY, and a GROUP_BY dependency) and
aggregated metrics (AGGREGATION) — plus the window and pane columns.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Step, aggregate
from pipelines.registry import Kind
from pipelines.spec_base import SpecModel, StepBase


class WindowShape(SpecModel):
    type: Literal["fixed", "sliding", "session", "global", "input"] = Field(
        default="fixed",
        description="input: the windows the rows carry in window_start/window_end (the output "
        "of an earlier window or top step), e.g. the max of per-key counts per window.",
    )
    size: float | None = Field(default=None, gt=0, description="Seconds (fixed, sliding).")
    period: float | None = Field(default=None, gt=0, description="Seconds (sliding).")
    gap: float | None = Field(default=None, gt=0, description="Seconds (session).")
    offset: float = 0.0


class WindowedStepBase(StepBase):
    """What every window-shaped step (window, top) shares: event time, windows, triggers."""

    event_time: str | None = Field(
        default=None, description="Timestamp/date/epoch-millis field; default: element time."
    )
    time_domain: Literal["event", "processing"] = Field(
        default="event",
        description="processing: fixed windows of processing time (arrival), as Beam expresses "
        "them: the global window firing every 'size' seconds (whole); one pane on bounded input.",
    )
    window: WindowShape = Field(default_factory=WindowShape)
    trigger: dict[str, Any] | None = Field(
        default=None,
        description="e.g. {type: watermark, early: {type: processing_time, delay: 10}, "
        "late: {type: count, count: 1}}",
    )
    allowed_lateness: float = Field(default=0.0, ge=0)
    accumulation: Literal["discarding", "accumulating"] = "discarding"
    group_by: list[str] = Field(default_factory=list)
    grace: float = Field(default=60.0, ge=0)


class WindowStepSpec(WindowedStepBase):
    """Event-time windows with triggers and lateness; late rows go to the dead letters."""

    type: Literal["window"]
    metrics: dict[str, str] = Field(
        default_factory=lambda: {"rows": "count"},
        description="Output -> count, sum|min|max|mean|count_distinct(field), first|last(field) "
        "(at the earliest/latest event time), stddev(field) or p1..p99(field) (percentile).",
    )


def windowing_arguments(node: WindowedStepBase) -> dict[str, Any]:
    """The :class:`transforms.windowing.Window` arguments a spec's window block gives
    (raises ValueError for what the spec model alone cannot refuse)."""
    from transforms.windowing import processing_time_panes, trigger_from_config, window_fn

    shape = node.window
    if node.time_domain == "processing":
        if shape.type != "fixed" or node.event_time or node.trigger:
            raise ValueError(
                "processing-time windows are 'window: {type: fixed, size: <seconds>}' without "
                "event_time or trigger (for other processing-time panes use window: {type: "
                "global} with trigger: {type: repeatedly, trigger: {type: processing_time, "
                "delay: <seconds>}})"
            )
        windows, trigger = processing_time_panes(shape.size or 0)
    else:
        windows = window_fn(
            shape.type, size=shape.size, period=shape.period, gap=shape.gap, offset=shape.offset
        )
        trigger = trigger_from_config(node.trigger)
    return {
        "window_fn": windows,
        "key_fields": node.group_by,
        "event_time_field": node.event_time,
        "trigger": trigger,
        "allowed_lateness": node.allowed_lateness,
        "accumulation": node.accumulation,
        "grace": node.grace,
        "step_name": node.name,
    }


def check_input_windows(node: WindowedStepBase, ctx: Any, path: str) -> None:
    """A step over an earlier step's windows must keep them open as long as that step does:
    in streaming, the earlier step's LATE panes arrive after their window's end, and with a
    shorter allowed lateness here they would all be dead-lettered as ``late``."""
    if node.window.type != "input":
        return
    from pipelines.spec import step_inputs

    upstream = {step.name: step for step in ctx.spec.steps}
    reads = next(names for _, step, names in step_inputs(ctx.spec) if step is node)
    for name in reads:
        before = upstream.get(name)
        lateness = getattr(before, "allowed_lateness", 0.0)
        if lateness > node.allowed_lateness:
            raise ctx.fail(
                f"{path}.allowed_lateness",
                f"is {node.allowed_lateness:g}s but '{name}', whose windows this step uses, "
                f"allows {lateness:g}s: its late panes would be dead-lettered here as late; "
                f"hint: set allowed_lateness: {lateness:g} (or more)",
            )


def build(node: WindowStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.windowing import Window

    check_input_windows(node, ctx, path)
    try:
        transform = Window(metrics=node.metrics, run_id=ctx.run_id, **windowing_arguments(node))
    except (ValueError, TypeError) as exc:
        raise ctx.fail(path, str(exc)) from None
    return rows | node.name >> transform


WINDOW_FIELDS = ("window_start", "window_end", "pane_timing", "pane_index")


def read_event_time(node: WindowedStepBase, state: FieldState, walk: Any, path: str) -> None:
    """Record the fields that place rows in windows (event time, or the input windows)."""
    if node.event_time:
        walk.read(f"{path}.event_time", [node.event_time], state)
    if node.window.type == "input":
        walk.read(f"{path}.window", ["window_start", "window_end"], state)


def lineage(node: WindowStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    read_event_time(node, state, walk, path)
    out = aggregate(node.group_by, node.metrics, state, walk.read, path)
    add_window_fields(node, state, out)
    return out


def add_window_fields(node: WindowedStepBase, state: FieldState, out: FieldState) -> None:
    """The window and pane columns a step writes: input windows pass their bounds on."""
    for name in WINDOW_FIELDS:
        passed = node.window.type == "input" and name in ("window_start", "window_end")
        out.fields[name] = (
            [o.then(Step("DIRECT", "IDENTITY", "input window")) for o in state.fields.get(name, [])]
            if passed
            else []
        )


KIND = Kind("step", WindowStepSpec, build, lineage=lineage, combines=True)
