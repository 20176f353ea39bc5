"""Write one small table (a report) as a single JSON or CSV file, atomically.

Reports are the business view of a run (e.g. revenue per status). They are staged and
published by rename, so a reader never sees half a report, and only after the run succeeded.
"""

from __future__ import annotations

import io
import json
import posixpath
import uuid
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.csv as pacsv

from connectors.committer import OutputTarget, make_dirs
from connectors.fileio import finish_staging
from connectors.files.base import open_output


def report_bytes(table: pa.Table, path: str) -> bytes:
    """The report file's content: a JSON array of row objects, or CSV with a header."""
    if path.endswith(".csv"):
        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        return buffer.getvalue()
    rows = table.to_pylist()
    return (json.dumps(rows, indent=2, default=str, ensure_ascii=False) + "\n").encode("utf-8")


class _WriteReportFn(beam.DoFn):
    def __init__(self, target: OutputTarget, publish: bool) -> None:
        self._target = target
        self._publish = publish

    def process(self, table: pa.Table) -> Iterable[dict[str, Any]]:
        target = self._target
        make_dirs(target.staging_dir)
        staged = f"{target.staging_dir}/{target.name}"
        with open_output(staged) as out:
            out.write(report_bytes(table, target.name or ""))
        path = f"{target.directory}/{target.name}"
        yield finish_staging(
            target, [(staged, table.num_rows)], publish=self._publish, lineage_path=path
        )


class WriteReport(beam.PTransform):
    """Write each (normally the single) input table to ``path`` (.json or .csv).

    The report is staged and published like any sink's output (:mod:`connectors.committer`):
    it owns its one file, never replaces a file it did not write, and ``publish=False`` leaves
    publishing to the driver (beamwright's runs, after their checks passed).
    """

    def __init__(
        self,
        path: str,
        *,
        sink_name: str,
        run_id: str = "",
        pipeline_name: str = "",
        publish: bool = True,
        where: str = "",
    ) -> None:
        super().__init__()
        if not path.endswith((".json", ".csv")):
            raise ValueError(f"report path must end with .json or .csv: {path}")
        write_id = uuid.uuid4().hex[:12]
        directory, name = posixpath.split(path)
        self.target = OutputTarget(
            directory=directory or ".",
            name=name,
            pipeline=pipeline_name,
            sink=sink_name,
            mode="overwrite",
            run_id=run_id or write_id,
            write_id=write_id,
            where=where,
        )
        self._fn = _WriteReportFn(self.target, publish)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return tables | beam.ParDo(self._fn)
