"""Write one small table (a report) as a single JSON or CSV file, atomically.

Reports are the business view of a run (e.g. revenue per status). They are written to a
temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import io
import json
import posixpath
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv
from apache_beam.io.filesystems import FileSystems

from connectors.fileio import ensure_directory
from connectors.files.base import open_output
from connectors.metrics import ROWS_WRITTEN, NodeCounters


def report_bytes(table: pa.Table, path: str) -> bytes:
    """The report file's content: a JSON array of row objects, or CSV with a header."""
    if path.endswith(".csv"):
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        return buffer.getvalue()
    rows = table.to_pylist()
    return (json.dumps(rows, indent=2, default=str, ensure_ascii=False) + "\n").encode("utf-8")


class _WriteReportFn(beam.DoFn):
    def __init__(self, path: str, sink: str) -> None:
        self._path = path
        self._sink = sink

    def process(self, table: pa.Table) -> Iterable[dict[str, Any]]:
        data = report_bytes(table, self._path)
        ensure_directory(posixpath.dirname(self._path) or ".")
        temp = self._path + ".beamwright-tmp"
        with open_output(temp) as out:
            out.write(data)
        if FileSystems.exists(self._path):
            FileSystems.delete([self._path])
        FileSystems.rename([temp], [self._path])
        FileSystems.report_sink_lineage(self._path)  # Beam's own Lineage metric
        counters = NodeCounters(self._sink)
        counters.inc(ROWS_WRITTEN, table.num_rows)
        counters.inc("files", 1)
        counters.inc("bytes", len(data))
        yield {
            "sink": self._sink,
            "files": [self._path],
            "rows": table.num_rows,
            "bytes": len(data),
        }


class WriteReport(beam.PTransform):
    """Write each (normally the single) input table to ``path`` (.json or .csv)."""

    def __init__(self, path: str, *, sink_name: str) -> None:
        super().__init__()
        if not path.endswith((".json", ".csv")):
            raise ValueError(f"report path must end with .json or .csv: {path}")
        self._fn = _WriteReportFn(path, sink_name)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | beam.ParDo(self._fn)
