"""The ``report`` sink: an aggregate of its input (one row per group) written as one JSON or
CSV file the sink owns, published only when the run succeeded. On unbounded input: one report
per window, republished with each pane (:class:`connectors.report.WriteReport`).

Column lineage: group keys (IDENTITY, plus a GROUP_BY dependency) and metrics (AGGREGATION).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, aggregate
from pipelines.registry import Kind
from pipelines.spec_base import METRIC_PATTERN, SinkBase


class ReportSinkSpec(SinkBase):
    """An aggregate report of its input (one row per group), as JSON or CSV."""

    type: Literal["report"]
    path: str = Field(description="Output file (.json or .csv).")
    group_by: list[str] = Field(default_factory=list)
    metrics: dict[str, str] = Field(
        default_factory=lambda: {"rows": "count"},
        description="Output column -> 'count' or 'sum|min|max|mean(field)'.",
    )

    @model_validator(mode="after")
    def _metrics(self) -> ReportSinkSpec:
        for column, metric in self.metrics.items():
            if not METRIC_PATTERN.match(metric):
                raise ValueError(
                    f"metric '{column}: {metric}' is not 'count' or 'sum|min|max|mean(field)'"
                )
        if not self.path.endswith((".json", ".csv")):
            raise ValueError("report path must end with .json or .csv")
        return self


def build(node: ReportSinkSpec, ctx: Any, path: str, rows: Any) -> None:
    import apache_beam as beam

    from connectors.metrics import ROWS_IN, CountRows
    from connectors.names import CombineGlobally
    from connectors.panes import into_panes, is_streaming
    from connectors.report import WriteReport
    from transforms.aggregate import GroupAggregate

    write = WriteReport(
        node.path,
        sink_name=node.name,
        run_id=ctx.run_id,
        pipeline_name=ctx.spec.name,
        publish=False,
        where=f"{path}.path",
    )
    dataset = ctx.dataset(node.name, "sink", node.path, node.path.rsplit(".", 1)[-1])
    staged = ctx.own_output(dataset, write.target, f"{path}.path")
    streaming = is_streaming(rows)
    # what the report summarises, so the summary sees the sink received every row (it
    # writes a few aggregate rows: its rows_written is theirs, see Kind.combines)
    rows = rows | f"{node.name}/Received" >> beam.Map(CountRows(node.name, ROWS_IN))
    if streaming:  # one report per window, republished with each pane
        frequency = ctx.spec.run.triggering_frequency
        rows = into_panes(rows, frequency, accumulating=True, label=f"{node.name}/Panes")
    aggregate = CombineGlobally(GroupAggregate(node.group_by, node.metrics), defaults=not streaming)
    staged.done = rows | f"{node.name}/Aggregate" >> aggregate | node.name >> write
    ctx.datasets_out.append(dataset)


def lineage(node: ReportSinkSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    return aggregate(node.group_by, node.metrics, state, walk.read, path)


def paths(node: ReportSinkSpec) -> list[tuple[str, str, bool]]:
    return [("path", node.path, True)]


def dry_run(node: ReportSinkSpec, table: Any) -> list[str]:
    """Aggregate ``table`` (empty, with the real input schema) as the run would."""
    from pipelines.column_lineage import unknown_field
    from transforms.aggregate import GroupAggregate, ReportFieldError

    try:
        GroupAggregate(node.group_by, node.metrics).partial(table)
    except ReportFieldError as exc:
        return [unknown_field(exc.where, exc.field, exc.available)]
    except Exception as exc:  # noqa: BLE001 - e.g. sum() of a text column
        return [f"metrics: {exc}"]
    return []


KIND = Kind(
    "sink", ReportSinkSpec, build, lineage=lineage, paths=paths, dry_run=dry_run, combines=True
)
