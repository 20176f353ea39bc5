"""The ``window`` step: event-time windows with triggers and lateness, aggregated per key;
late rows go to the dead letters (rule ``late``) instead of vanishing as in plain Beam.

Column lineage: like a report — group keys (IDENTITY, and a GROUP_BY dependency) and
aggregated metrics (AGGREGATION) — plus the window and pane columns.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, aggregate
from pipelines.registry import Kind
from pipelines.spec_base import SpecModel, StepBase


class WindowShape(SpecModel):
    type: Literal["fixed", "sliding", "session", "global"] = "fixed"
    size: float | None = Field(default=None, gt=0, description="Seconds (fixed, sliding).")
    period: float | None = Field(default=None, gt=0, description="Seconds (sliding).")
    gap: float | None = Field(default=None, gt=0, description="Seconds (session).")
    offset: float = 0.0


class WindowStepSpec(StepBase):
    """Event-time windows with triggers and lateness; late rows go to the dead letters."""

    type: Literal["window"]
    event_time: str | None = Field(
        default=None, description="Timestamp/date/epoch-millis field; default: element time."
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
    metrics: dict[str, str] = Field(
        default_factory=lambda: {"rows": "count"},
        description="Output -> count, sum|min|max|mean|count_distinct(field), first|last(field) "
        "(at the earliest/latest event time), stddev(field) or p1..p99(field) (percentile).",
    )
    grace: float = Field(default=60.0, ge=0)


def build(node: WindowStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.windowing import Window, trigger_from_config, window_fn

    try:
        shape = node.window
        transform = Window(
            window_fn=window_fn(
                shape.type, size=shape.size, period=shape.period, gap=shape.gap, offset=shape.offset
            ),
            key_fields=node.group_by,
            metrics=node.metrics,
            event_time_field=node.event_time,
            trigger=trigger_from_config(node.trigger),
            allowed_lateness=node.allowed_lateness,
            accumulation=node.accumulation,
            grace=node.grace,
            step_name=node.name,
            run_id=ctx.run_id,
        )
    except (ValueError, TypeError) as exc:
        raise ctx.fail(path, str(exc)) from None
    return rows | node.name >> transform


WINDOW_FIELDS = ("window_start", "window_end", "pane_timing", "pane_index")


def lineage(node: WindowStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    if node.event_time:
        walk.read(f"{path}.event_time", [node.event_time], state)
    out = aggregate(node.group_by, node.metrics, state, walk.read, path)
    for name in WINDOW_FIELDS:
        out.fields[name] = []
    return out


KIND = Kind("step", WindowStepSpec, build, lineage=lineage)
