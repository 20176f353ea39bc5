"""The ``top`` step: per window (and ``group_by`` key), the ``n`` rows with the greatest (or
least) ``value``, whole; ties kept (``ties: all``) or cut at ``n`` (``first``). The windows,
event time, triggers, lateness and late-row dead letters are the window step's.

Column lineage: the rows keep their fields (IDENTITY); which rows survive depends on the value
(INDIRECT SORT), the group keys (INDIRECT GROUP_BY) and the event time (INDIRECT WINDOW); the
window and pane columns are written by the step.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.steps.window import (
    WindowedStepBase,
    add_window_fields,
    check_input_windows,
    read_event_time,
)


class TopStepSpec(WindowedStepBase):
    """Per window and key, the n rows with the greatest (or least) value, kept whole."""

    type: Literal["top"]
    value: str = Field(description="Field or expression ranking the rows, e.g. price.")
    n: int = Field(default=1, ge=1, description="Rows per window and key (see ties).")
    order: Literal["greatest", "least"] = "greatest"
    ties: Literal["all", "first"] = Field(
        default="all",
        description="all: every row ranked below n (equal values share a rank, so n: 1 keeps "
        "all rows tied for the top); first: exactly n, the earlier event time first.",
    )


def build(node: TopStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from pipelines.steps.window import windowing_arguments
    from transforms.top import TopRows
    from transforms.windowing import Window

    ctx.check_expression(node.value, f"{path}.value")
    check_input_windows(node, ctx, path)
    try:
        top = TopRows(list(node.group_by), node.value, node.n, node.order, node.ties)
        transform = Window(aggregation=top, run_id=ctx.run_id, **windowing_arguments(node))
    except (ValueError, TypeError) as exc:
        raise ctx.fail(path, str(exc)) from None
    return rows | node.name >> transform


def lineage(node: TopStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.expressions import parse

    read_event_time(node, state, walk, path)
    names = parse(node.value).fields
    walk.read(f"{path}.value", sorted(names), state)
    for j, key in enumerate(node.group_by):
        walk.read(f"{path}.group_by[{j}]", [key], state)
    out = state.copy()
    depend(out, names, Step("INDIRECT", "SORT", f"{node.name}: {node.order} {node.value}"))
    depend(out, node.group_by, Step("INDIRECT", "GROUP_BY", f"top per {', '.join(node.group_by)}"))
    if node.event_time:
        depend(out, [node.event_time], Step("INDIRECT", "WINDOW", f"event time {node.event_time}"))
    add_window_fields(node, state, out)
    return out


def expressions(node: TopStepSpec) -> list[tuple[str, str]]:
    return [("value", node.value)]


KIND = Kind("step", TopStepSpec, build, lineage=lineage, expressions=expressions, combines=True)
