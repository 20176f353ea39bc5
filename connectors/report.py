"""Write one small table (a report) as a single JSON or CSV file, atomically.

Reports are the business view of a run (e.g. revenue per status). They are staged and
published by rename, so a reader never sees half a report, and only after the run succeeded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import uuid
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
    def __init__(self, target: OutputTarget, publish: bool, per_window: bool) -> None:
        self._target = target
        self._publish = publish
        self._per_window = per_window  # streaming: one report per window, see WriteReport

    def process(self, table, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        target = self._target
        publish = self._publish
        if self._per_window:
            target, table = _window_report(target, table, window, pane.index)
            publish = True
        make_dirs(target.staging_dir)
        staged = f"{target.staging_dir}/{target.name}"
        with open_output(staged) as out:
            out.write(report_bytes(table, target.name or ""))
        path = f"{target.directory}/{target.name}"
        yield finish_staging(target, [(staged, table.num_rows)], publish=publish, lineage_path=path)


def _window_report(
    target: OutputTarget, table: pa.Table, window: Any, pane_index: int
) -> tuple[OutputTarget, pa.Table]:
    """The report of one window's pane: its own file ``<stem>-<window><ext>`` (each pane
    replaces it with the whole window so far) and rows that say which window and pane."""
    from connectors.panes import window_bounds, window_label

    stem, extension = posixpath.splitext(target.name or "")
    named = dataclasses.replace(
        target, name=f"{stem}-{window_label(window)}{extension}", write_id=f"{pane_index:05d}"
    )
    start, end = window_bounds(window)
    n = table.num_rows
    columns = {
        "window_start": pa.array([start] * n, pa.int64()).cast(_TIME),
        "window_end": pa.array([end] * n, pa.int64()).cast(_TIME),
        "pane_index": pa.array([pane_index] * n, pa.int64()),
    }
    for i, (name, column) in enumerate(columns.items()):
        table = table.add_column(i, name, column)
    return named, table


_TIME = pa.timestamp("us", tz="UTC")


class WriteReport(beam.PTransform):
    """Write each (normally the single) input table to ``path`` (.json or .csv).

    The report is staged and published like any sink's output (:mod:`connectors.committer`):
    it owns its one file, never replaces a file it did not write, and ``publish=False`` leaves
    publishing to the driver (beamwright's runs, after their checks passed).

    On unbounded input there is one report per window instead, ``<stem>-<window><ext>``
    (``revenue-20260101T000000Z_20260101T000100Z.json``, or ``revenue-global.json`` for rows in
    no event-time window), its rows prefixed by ``window_start``, ``window_end`` and
    ``pane_index``; each pane republishes it with the whole window so far (the input must
    come in accumulating panes: see :func:`connectors.panes.into_panes`).
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
        self._publish = publish

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        from connectors.panes import is_streaming

        fn = _WriteReportFn(self.target, self._publish, per_window=is_streaming(tables))
        return tables | "Write" >> beam.ParDo(fn)
