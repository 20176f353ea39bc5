"""Grouped aggregates over Arrow batches, computed in two phases so they scale.

Each batch is reduced to partial aggregates with Arrow's ``group_by`` (C++); partials are
merged by a CombineFn and finalised once. ``mean`` is carried as sum and count, and
``count_distinct`` as the distinct values per group, so the result is exact however the
input was split into batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import BeamwrightError

METRIC = re.compile(
    r"^(count|(sum|min|max|mean|count_distinct|first|last|stddev|p[1-9][0-9]?)"
    r"\(([A-Za-z_][\w.]*)\))$"
)
WINDOW_ONLY = ("first", "last", "stddev", "percentile")
"""Metrics only the window step computes: ``first``/``last`` need each row's event time, and
``stddev``/``pNN`` (percentiles) keep a group's values, which a report's merge of Arrow
partial tables does not carry."""


class ReportFieldError(BeamwrightError, ValueError):
    """A report names a field its rows do not have: says where, which, and what there is."""

    def __init__(self, where: str, field: str, available: Sequence[str]) -> None:
        visible = [c for c in available if not c.startswith("_bw_")]
        super().__init__(
            f"unknown field '{field}'",
            where=where,
            hint=f"the rows have: {', '.join(visible) or 'none'}",
        )
        self.field = field
        self.available = visible


@dataclass(frozen=True)
class Metric:
    output: str
    kind: str  # count | sum | min | max | mean | count_distinct | first | last | stddev | percentile
    field: str | None
    percent: int | None = None  # percentile: pNN(field) -> NN

    @staticmethod
    def parse(output: str, text: str) -> Metric:
        m = METRIC.match(text.strip())
        if not m:
            raise ValueError(
                f"metric '{output}: {text}' is not 'count' or 'sum|min|max|mean|count_distinct"
                "(field)' (window steps also: first|last|stddev|p1..p99(field))"
            )
        if m.group(1) == "count":
            return Metric(output, "count", None)
        if m.group(2).startswith("p") and m.group(2)[1:].isdigit():
            return Metric(output, "percentile", m.group(3), int(m.group(2)[1:]))
        return Metric(output, m.group(2), m.group(3))


def _partial_specs(metric: Metric) -> list[tuple[str, str, str]]:
    """(input column, arrow aggregation, partial column) triples for one metric."""
    o = metric.output
    if metric.kind == "count":
        return [("__bw_one", "sum", f"{o}__count")]
    if metric.kind == "mean":
        return [(metric.field, "sum", f"{o}__sum"), (metric.field, "count", f"{o}__n")]
    if metric.kind == "count_distinct":
        return [(metric.field, "distinct", f"{o}__distinct")]
    return [(metric.field, metric.kind, f"{o}__{metric.kind}")]


def aggregation(column: str, agg: str) -> tuple:
    """An Arrow aggregation; ``distinct`` ignores nulls like SQL's COUNT(DISTINCT)."""
    if agg == "distinct":
        return (column, agg, pc.CountOptions(mode="only_valid"))
    return (column, agg)


def groupable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as Arrow's grouping kernels take it: dictionaries decoded, views as plain
    strings, and an all-null column of JSON (type ``null``, which ``distinct`` crashes on) as
    int64 nulls: the same values either way."""
    kind = column.type
    if pa.types.is_null(kind):
        return column.cast(pa.int64())
    if pa.types.is_dictionary(kind):
        return column.cast(kind.value_type)
    if pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_binary_view(kind):
        return column.cast(pa.binary())
    return column


_MERGE = {"sum": "sum", "count": "sum", "min": "min", "max": "max"}


class GroupAggregate(beam.CombineFn):
    """CombineFn: Arrow batches in, one table with a row per group out."""

    def __init__(self, group_by: Sequence[str], metrics: Mapping[str, str]) -> None:
        self.group_by = list(group_by)
        self.metrics = [Metric.parse(o, t) for o, t in metrics.items()]
        for m in self.metrics:
            if m.kind in WINDOW_ONLY:
                raise ValueError(
                    f"metric '{m.output}: {metrics[m.output]}' is computed by window steps only; "
                    "use count, sum, min, max, mean or count_distinct here"
                )

    def partial(self, table: pa.Table) -> pa.Table:
        self._check_fields(table.column_names)
        for m in self.metrics:
            if m.kind == "count_distinct" and m.field is not None:
                i = table.column_names.index(m.field)
                table = table.set_column(i, m.field, groupable(table.column(i)))
        table = table.append_column("__bw_one", pa.array([1] * table.num_rows, pa.int64()))
        specs = [s for m in self.metrics for s in _partial_specs(m)]
        grouped = table.group_by(self.group_by, use_threads=False).aggregate(
            [aggregation(col, agg) for col, agg, _ in specs]
        )
        return grouped.rename_columns(self.group_by + [out for _, _, out in specs])

    def _check_fields(self, columns: Sequence[str]) -> None:
        """Name a missing field plainly; Arrow's own error is a bare ``ArrowInvalid``."""
        for j, key in enumerate(self.group_by):
            if key not in columns:
                raise ReportFieldError(f"group_by[{j}]", key, columns)
        for m in self.metrics:
            if m.field is not None and m.field not in columns:
                raise ReportFieldError(f"metrics.{m.output}", m.field, columns)

    def create_accumulator(self) -> list[pa.Table]:
        return []

    def add_input(self, acc: list[pa.Table], table: pa.Table) -> list[pa.Table]:
        if table.num_rows:
            acc.append(self.partial(table))
        if len(acc) > 64:
            acc = [self._merge(acc)]
        return acc

    def merge_accumulators(self, accs: Sequence[list[pa.Table]]) -> list[pa.Table]:
        tables = [t for acc in accs for t in acc]
        return [self._merge(tables)] if tables else []

    def _merge(self, tables: list[pa.Table]) -> pa.Table:
        table = pa.concat_tables(tables, promote_options="permissive")
        aggs = []
        for m in self.metrics:
            for _, agg, out in _partial_specs(m):
                aggs.append(aggregation(out, "distinct" if agg == "distinct" else _MERGE[agg]))
        distinct_cols = [
            out for m in self.metrics for _, agg, out in _partial_specs(m) if agg == "distinct"
        ]
        if distinct_cols:
            table = _explode_lists(table, self.group_by, distinct_cols)
        merged = table.group_by(self.group_by, use_threads=False).aggregate(aggs)
        # Arrow puts the keys first, then the aggregates in the order asked
        return merged.rename_columns(self.group_by + [a[0] for a in aggs])

    def extract_output(self, acc: list[pa.Table]) -> pa.Table:
        if not acc:
            return pa.table({m.output: pa.array([], pa.int64()) for m in self.metrics})
        merged = self._merge(acc)
        columns = {g: merged.column(g) for g in self.group_by}
        for m in self.metrics:
            o = m.output
            if m.kind == "count":
                columns[o] = merged.column(f"{o}__count")
            elif m.kind == "mean":
                columns[o] = pc.divide(
                    pc.cast(merged.column(f"{o}__sum"), pa.float64()), merged.column(f"{o}__n")
                )
            elif m.kind == "count_distinct":
                columns[o] = pc.list_value_length(merged.column(f"{o}__distinct"))
            else:
                columns[o] = merged.column(f"{o}__{m.kind}")
        result = pa.table(columns)
        return (
            result.sort_by([(g, "ascending") for g in self.group_by]) if self.group_by else result
        )


def _explode_lists(table: pa.Table, group_by: list[str], list_columns: list[str]) -> pa.Table:
    """Turn per-group distinct lists into rows, so ``distinct`` can collect them again.

    Arrow cannot aggregate list columns, so each list value becomes its own row holding only
    the group keys and that value (every other partial null, so sums are not repeated).
    """
    n = table.num_rows
    skeleton = table.drop_columns(list_columns)
    for c in list_columns:
        skeleton = skeleton.append_column(c, pa.nulls(n, table.column(c).type.value_type))
    pieces = [skeleton]
    for c in list_columns:
        lists = table.column(c).combine_chunks()
        parents = pc.list_parent_indices(lists)
        columns = {}
        for field in skeleton.schema:
            if field.name in group_by:
                columns[field.name] = table.column(field.name).take(parents)
            elif field.name == c:
                columns[field.name] = pc.list_flatten(lists)
            else:
                columns[field.name] = pa.nulls(len(parents), field.type)
        pieces.append(pa.table(columns, schema=skeleton.schema))
    return pa.concat_tables(pieces)
