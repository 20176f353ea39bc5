"""Rows of a records API listing shaped for a sync: the key, tombstone flags, and only the
changes strictly after the committed ``(modifiedTime, id)`` mark.

The API's ``modified_since`` is inclusive (so nothing sharing the mark's millisecond is lost),
which sends back what the last sync already had at the mark; :class:`RecordRows` drops those,
so a change is new exactly when ``(modifiedTime, id) > (mark_time, mark_id)``. The dropped
rows are counted as the source's ``rows_filtered`` and the kept ones as its ``rows_out`` (the
reader counts only ``rows_in`` and dead letters), so the source reconciles and its consumer
receives exactly what it says it emitted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.metrics import ROWS_FILTERED, ROWS_OUT, NodeCounters

EXTERNAL = "_bw_external_id"  # the record's external id field, read and folded into the key


def endpoint_after(mark: tuple[Any, str] | None, endpoint: Any) -> Any:
    """``endpoint`` (a :class:`transforms.http_source.Endpoint`) asking for the records
    modified since ``mark``'s time (all of them without a mark); called by ``beam.Map`` with
    the mark read when the run starts."""
    since = mark[0].isoformat().replace("+00:00", "Z") if mark else None
    return replace(endpoint, since=since)


class RecordRows:
    """``table`` -> the same rows keyed (the external id, else the API id), tombstone flags
    false when absent, rows at or before ``mark`` dropped and counted as ``source``'s
    filtered rows. Called by ``beam.Map`` with the committed mark as a side input (read when
    the run starts)."""

    def __init__(
        self,
        source: str,
        key_column: str,
        id_column: str,
        modified_column: str,
        deleted_column: str | None,
    ) -> None:
        self.key_column, self.id_column = key_column, id_column
        self.modified_column, self.deleted_column = modified_column, deleted_column
        self._counters = NodeCounters(source)

    def __call__(self, table: pa.Table, mark: tuple[Any, str] | None) -> pa.Table:
        kept = self._shape(table, mark)
        self._counters.inc(ROWS_OUT, kept.num_rows)
        self._counters.inc(ROWS_FILTERED, table.num_rows - kept.num_rows)
        return kept

    def _shape(self, table: pa.Table, mark: tuple[Any, str] | None) -> pa.Table:
        key = pc.coalesce(table.column(EXTERNAL), table.column(self.id_column))
        table = table.drop_columns([EXTERNAL])
        table = table.add_column(0, self.key_column, key)
        if self.deleted_column is not None:
            i = table.column_names.index(self.deleted_column)
            flags = pc.fill_null(table.column(i), False)
            table = table.set_column(i, self.deleted_column, flags)
        if mark is None or table.num_rows == 0:
            return table
        moment = pa.scalar(mark[0], table.schema.field(self.modified_column).type)
        modified, ids = table.column(self.modified_column), table.column(self.id_column)
        after = pc.or_(
            pc.greater(modified, moment),
            pc.and_(pc.equal(modified, moment), pc.greater(ids, pa.scalar(mark[1]))),
        )
        return table.filter(pc.fill_null(after, False))
