"""``expect_column_values_to_be_unique`` judged on the whole (bounded) input, not per batch.

GX marks *every* row of a value held more than once as unexpected
(``~column.duplicated(keep=False)``); on a pipeline that must mean the whole input, so a value
in two batches, files or workers is caught. Only values travel through Beam's shuffle, never
rows: each batch turns the column into canonical keys, counts them in Arrow and sends
``(expectation, bucket) -> (key, count)`` tables; each bucket sums its counts and keeps the keys
held more than once. Those repeated keys (usually few) come back to the validate step as one
side input, and a batch's rows whose key is among them are unexpected. A bucket holds 1/:data:`BUCKETS` of the column's
distinct values, so no worker needs the whole column.

Keys follow pandas' equality on the column GX would see: missing values (null, NaN) are
skipped; numbers compare by value, so ``1``, ``1.0`` and ``-0.0``/``0.0`` are one value even
when batches typed the column differently (an int column keeps full int64 precision); strings
compare exactly; other types by their Arrow text, prefixed by their type so ``"1"`` and ``1``
stay apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BUCKETS = 16
TYPES = frozenset({"expect_column_values_to_be_unique"})

# (expectation index, bucket) -> table of (key, count) in one batch
_Keyed = tuple[tuple[int, int], pa.Table]
Repeated = Mapping[int, pa.Table]  # expectation index -> (key, count) of the repeated keys


def canonical_keys(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One string per row naming its value as pandas compares it; null where GX skips."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_floating(kind):
        x = pc.add(column.cast(pa.float64()), 0.0)  # -0.0 + 0.0 is 0.0
        x = pc.if_else(pc.is_nan(x), pa.scalar(None, pa.float64()), x)
        # an integral float is the int it equals: 1.0 in one batch meets 1 in another
        integral = pc.and_(pc.equal(pc.floor(x), x), pc.less(pc.abs(x), 2.0**63))
        as_int = pc.cast(pc.cast(pc.if_else(integral, x, 0.0), pa.int64()), pa.string())
        text = pc.if_else(integral, as_int, pc.cast(x, pa.string()))
        prefix = "n:"
    elif pa.types.is_integer(kind):
        text, prefix = pc.cast(column, pa.string()), "n:"
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text, prefix = column.cast(pa.string()), "s:"
    else:
        text, prefix = pc.cast(column, pa.string()), f"{kind}:"
    return pc.binary_join_element_wise(prefix, text, "")


def _buckets(keys: pa.Array) -> np.ndarray:
    """A stable bucket per key (the same in every process: pandas' fixed-key SipHash)."""
    from pandas.util import hash_array

    values = np.asarray(keys.to_numpy(zero_copy_only=False), dtype=object)
    return (hash_array(values) % BUCKETS).astype(np.int64)


def batch_counts(
    table: pa.Table, columns: Mapping[int, str], typed: Callable[[pa.Table, str], Any]
) -> Iterable[_Keyed]:
    """``((index, bucket), (key, count) table)`` for every expectation's column in ``table``;
    ``typed(table, name)`` gives the column as the validate step types it."""
    for index, name in columns.items():
        keys = pc.drop_null(canonical_keys(typed(table, name)))
        if not len(keys):
            continue
        counts = pc.value_counts(keys)
        values, n = counts.field("values"), counts.field("counts")
        buckets = _buckets(values)
        for bucket in np.unique(buckets).tolist():
            picked = pa.array(buckets == bucket)
            part = pa.table({"key": values.filter(picked), "count": n.filter(picked)})
            yield (index, bucket), part


def repeated_in_bucket(element: tuple[tuple[int, int], Iterable[pa.Table]]) -> Iterable:
    """``(index, (key, count) of the keys held more than once)`` for one bucket."""
    (index, _), parts = element
    total = pa.concat_tables(list(parts)).group_by("key").aggregate([("count", "sum")])
    repeated = total.filter(pc.greater(total.column("count_sum"), 1))
    if repeated.num_rows:
        yield index, repeated.rename_columns(["key", "count"])


def by_expectation(found: Iterable[tuple[int, pa.Table]]) -> dict[int, pa.Table]:
    """The buckets' repeated keys gathered per expectation: the validate step's side input."""
    out: dict[int, list[pa.Table]] = {}
    for index, table in found:
        out.setdefault(index, []).append(table)
    return {index: pa.concat_tables(tables) for index, tables in out.items()}


def unexpected(column: pa.ChunkedArray, repeated: pa.Table | None) -> tuple[np.ndarray, int]:
    """(positions of the rows holding a repeated value, rows GX judges ``mostly`` on)."""
    keys = canonical_keys(column)
    considered = len(keys) - keys.null_count
    if repeated is None or not repeated.num_rows or not considered:
        return np.empty(0, np.int64), considered
    found = pc.is_in(keys, value_set=repeated.column("key"))
    return np.flatnonzero(pc.fill_null(found, False).to_numpy(zero_copy_only=False)), considered


class RepeatedValues(beam.PTransform):
    """Batches in, one element out: ``{expectation index: (key, count) table}`` of the values
    held by more than one row of the whole input (for ``beam.pvalue.AsSingleton``).

    Args:
        columns: expectation index -> the column it checks.
        typed: ``typed(table, name)``, the column as the validate step types it.
    """

    def __init__(self, columns: Mapping[int, str], typed: Callable[[pa.Table, str], Any]) -> None:
        super().__init__()
        self._columns = dict(columns)
        self._typed = typed

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return (
            tables
            | "Counts" >> beam.FlatMap(batch_counts, self._columns, self._typed)
            | "Shuffle" >> beam.GroupByKey()
            | "Repeated" >> beam.FlatMap(repeated_in_bucket)
            | "Gather" >> beam.combiners.ToList()
            | "PerExpectation" >> beam.Map(by_expectation)
        )
