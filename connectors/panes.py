"""Writing unbounded input: one directory per window, one atomically published file group per
pane, names that a replay reproduces.

A batch write stages every bundle and publishes once, when the run succeeded. A streaming job
never ends, so its file sinks publish per *pane*: the rows of one window that one trigger
firing released, as Beam's ``fileio.WriteToFiles`` and Dataflow's windowed writes do.

* **Which windows.** Rows that a ``window`` step placed in event-time windows are written in
  those windows, pane by pane as the step's trigger fires (on time at the watermark, then late
  panes). Rows in the global window (no window step upstream: validated records, dead letters)
  are cut into processing-time panes every ``triggering_frequency`` seconds (default 60).
* **Names.** A pane's files are ``<dir>/<window>/pane-<index>-part-<shard>-of-<n>.<ext>``:
  ``<window>`` is the window's bounds (``20260101T000000Z_20260101T000100Z``, or ``global``),
  ``<index>`` Beam's pane index, ``<shard>`` a roll-over at ``max_rows_per_file``. Nothing
  random goes in (no uuid, no write id), and a pane's rows are put in a fixed order (by source
  position when the rows carry one, else batches by content digest), so a bundle the runner
  retries rewrites the same names with the same rows: at-least-once input, each pane once on
  disk.
* **Atomic per pane.** Each pane is written into a staging directory of its window directory
  and published by :class:`connectors.committer.OutputCommitter` in ``append`` mode: journal,
  renames, then the window directory's ``_beamwright_manifest.json`` naming the sink as owner
  and every file it published there. A reader that trusts the manifest never sees half a pane;
  a crash mid-publish is rolled forward by the pane's next publish (or retry). The panes of one
  window are published one after the other (one key per window), so manifests never race.

What a streaming job cannot have is a run-wide commit: panes already published stay published
when the job later fails (the same is true of every streaming sink, Kafka included).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.coders import coders
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.transforms import trigger as tr
from apache_beam.transforms.window import GlobalWindow, GlobalWindows, NonMergingWindowFn

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.committer import OutputTarget, make_dirs
from connectors.files.base import open_output
from connectors.files.registry import make_format
from connectors.records import OFFSET_COLUMN, SOURCE_COLUMN, plain_positions, strip_positions

DEFAULT_TRIGGERING_FREQUENCY = 60
GLOBAL_LABEL = "global"
BUCKET_COLUMN = "__bw_window_start"
"""The event-time window (start, epoch µs) a file sink's ``window`` option put a row in
(``transforms.time_buckets``); the writers group by it and drop it."""
ENCODED_COLUMN = "__bw_encoded"
"""A row already encoded by its format (``PaneFiles.pre_encode``), in place of its columns."""


def is_streaming(pcoll: beam.PCollection) -> bool:
    """Whether ``pcoll`` is written the streaming way: unbounded, or in a streaming pipeline."""
    return not pcoll.is_bounded or bool(pcoll.pipeline.options.view_as(StandardOptions).streaming)


def window_label(window: Any) -> str:
    """A window as a directory or file-name part: ``<start>_<end>`` in UTC, or ``global``."""
    if isinstance(window, GlobalWindow):
        return GLOBAL_LABEL
    return f"{_stamp(window.start.micros)}_{_stamp(window.end.micros)}"


def _stamp(micros: int) -> str:
    moment = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=micros)
    text = moment.strftime("%Y%m%dT%H%M%S")
    return text + (f".{moment.microsecond:06d}Z" if moment.microsecond else "Z")


def bucket_label(start: int, size: int) -> str:
    """The window ``[start, start + size)`` (µs) as :func:`window_label` names a Beam window."""
    return f"{_stamp(start)}_{_stamp(start + size)}"


def split_buckets(table: pa.Table) -> list[tuple[int | None, pa.Table]]:
    """``table``'s rows per window start in :data:`BUCKET_COLUMN` (column kept), in start
    order; ``[(None, table)]`` when the rows carry no window."""
    if BUCKET_COLUMN not in table.column_names:
        return [(None, table)]
    starts = table.column(BUCKET_COLUMN).to_numpy()
    if len(starts) == 0 or starts.min() == starts.max():
        return [(int(starts[0]) if len(starts) else None, table)]
    order = np.argsort(starts, kind="stable")
    ordered = starts[order]
    cuts = [0, *(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(ordered)]
    return [
        (int(ordered[a]), table.take(order[a:b])) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def window_bounds(window: Any) -> tuple[int | None, int | None]:
    """Start and end of ``window`` in epoch microseconds (None for the global window)."""
    if isinstance(window, GlobalWindow):
        return None, None
    return window.start.micros, window.end.micros


# --------------------------------------------------------------------------- windowing


class KeepWindows(NonMergingWindowFn):
    """Re-window elements into the windows they already are in.

    ``WindowInto`` with a new trigger or accumulation mode would otherwise re-assign windows
    from each element's timestamp: an aggregate of a sliding window, timestamped at its end,
    would land in several windows, and one of a session in a new session. Used on the output of
    a ``window`` step only, whose windows are intervals.
    """

    def assign(self, context: Any) -> list[Any]:
        return [context.window]

    def get_window_coder(self) -> coders.Coder:
        return coders.IntervalWindowCoder()

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


def into_panes(
    pcoll: beam.PCollection, frequency: int, *, accumulating: bool, label: str
) -> beam.PCollection:
    """``pcoll`` with the panes a streaming sink writes: its own event-time windows and
    trigger when a window step made them (``accumulating``: re-windowed so every pane holds the
    whole window so far, for reports), else processing-time panes every ``frequency`` s."""
    windowing = pcoll.windowing
    mode = tr.AccumulationMode.ACCUMULATING if accumulating else tr.AccumulationMode.DISCARDING
    if isinstance(windowing.windowfn, GlobalWindows):
        return pcoll | label >> beam.WindowInto(
            GlobalWindows(),
            # at the end of the input too (a drained job, a finished TestStream): the rows that
            # arrived since the last pane are written then, instead of waiting for a clock
            trigger=tr.Repeatedly(tr.AfterAny(tr.AfterProcessingTime(frequency), tr.AfterWatermark())),
            accumulation_mode=mode,
        )
    if not accumulating:
        return pcoll
    return pcoll | label >> beam.WindowInto(
        KeepWindows(),
        trigger=tr.AfterWatermark(late=tr.AfterCount(1)),
        accumulation_mode=mode,
        allowed_lateness=windowing.allowed_lateness,
    )


# --------------------------------------------------------------------------- pane content


def pane_table(tables: Iterable[pa.Table]) -> pa.Table | None:
    """The rows of one pane in an order that does not depend on how they arrived.

    Rows with a source position are sorted by it (robust to re-batching); other batches are
    ordered by a digest of their content. None when the pane holds no rows.
    """
    batches = [t for t in tables if t.num_rows]
    if not batches:
        return None
    names = set(batches[0].column_names)
    if {SOURCE_COLUMN, OFFSET_COLUMN} <= names:
        table = pa.concat_tables([plain_positions(t) for t in batches], promote_options="default")
        keys = pa.table(
            {"s": table.column(SOURCE_COLUMN).cast(pa.string()), "o": table.column(OFFSET_COLUMN)}
        )
        order = pc.sort_indices(keys, sort_keys=[("s", "ascending"), ("o", "ascending")])
        return table.take(order)
    batches.sort(key=_digest)
    return pa.concat_tables(batches, promote_options="default")


def _digest(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).digest()


def pane_target(target: OutputTarget, label: str, pane_index: int) -> OutputTarget:
    """The committer target of one pane: the window's directory, appended to, pane names."""
    return dataclasses.replace(
        target,
        directory=f"{target.directory}/{label}",
        mode="append",
        write_id=f"{pane_index:05d}",
        stem=f"pane-{pane_index:05d}",
    )


# --------------------------------------------------------------------------- writing


@dataclasses.dataclass(frozen=True)
class PaneFiles:
    """How a group of rows (a pane, or a bounded run's window) becomes files: the
    ``WriteFiles`` settings that apply to them."""

    format_name: str
    options: dict[str, Any]
    max_rows: int | None
    keep_positions: bool
    shards: int | None = None  # exactly this many files per group (Beam's num_shards)
    window_size: int | None = None  # µs: rows carry BUCKET_COLUMN, one directory per window

    def label(self, start: int | None, window: Any = None) -> str | None:
        """The directory of a group's files: its bucket's window, else Beam's ``window``
        when given (panes), else none (a bounded run without windows)."""
        if start is not None and self.window_size:
            return bucket_label(start, self.window_size)
        return None if window is None else window_label(window)

    def pre_encode(self, fmt: Any, table: pa.Table) -> pa.Table:
        """``table`` as its positions, window and each row's encoded text
        (:data:`ENCODED_COLUMN`), when its files are shards of a format that encodes rows
        (see ``FileFormat``); else unchanged. Encoding a reader's big batch before grouping
        costs the column kernels' per-call overhead once per batch instead of once per
        group (a window of Nexmark's q10 holds 1,000 rows, a batch 10,000)."""
        if not self.shards or not hasattr(fmt, "encode_rows"):
            return table
        user = table.drop_columns([c for c in (BUCKET_COLUMN,) if c in table.column_names])
        user = plain_positions(user) if self.keep_positions else strip_positions(user)
        kept = [c for c in (SOURCE_COLUMN, OFFSET_COLUMN, BUCKET_COLUMN) if c in table.column_names]
        return table.select(kept).append_column(ENCODED_COLUMN, fmt.encode_rows(user))

    def stage(
        self, fmt: Any, table: pa.Table, staging_dir: str, extension: str, prefix: str
    ) -> list[tuple[str, int, int, int]]:
        """Write one group's rows (in :func:`pane_table` order) as files into ``staging_dir``:
        ``shards`` files, row i in shard i mod shards (deterministic: the order is), or files
        rolled over at ``max_rows``. Returns (staged path, rows, file index, file count)."""
        table = table.drop_columns([c for c in (BUCKET_COLUMN,) if c in table.column_names])
        n = table.num_rows
        if self.shards:
            count = self.shards
            pieces = [(s, np.arange(s, n, count)) for s in range(min(count, n))]
        else:
            step = self.max_rows or n
            pieces = [(i, np.arange(a, min(a + step, n))) for i, a in enumerate(range(0, n, step))]
            count = len(pieces)
        encoded = None
        if ENCODED_COLUMN in table.column_names:
            encoded = table.column(ENCODED_COLUMN).combine_chunks()
        elif len(pieces) > 1 and hasattr(fmt, "encode_rows"):  # see FileFormat
            encoded = fmt.encode_rows(table if self.keep_positions else strip_positions(table))

        def write(piece: tuple[int, np.ndarray]) -> tuple[str, int, int, int]:
            index, rows = piece
            path = f"{staging_dir}/{prefix}{index:05d}{extension}"
            with open_output(path) as sink:
                if encoded is not None:
                    fmt.write_encoded(sink, encoded.take(rows))
                    return path, len(rows), index, count
                writer = fmt.open_writer(sink)
                writer.keep_positions = self.keep_positions
                writer.write(table.take(rows))
                writer.close()
            return path, writer.rows_written, index, count

        if len(pieces) == 1:
            return [write(pieces[0])]
        # many small files (shards): creating a file is a system call that waits on the file
        # system, not on the GIL, so a few at a time
        return list(_file_writers().map(write, pieces))


@functools.cache
def _file_writers() -> ThreadPoolExecutor:
    """Threads that create a group's files (one pool per worker process)."""
    return ThreadPoolExecutor(4, thread_name_prefix="beamwright-files")


class _WritePaneFn(beam.DoFn):
    """Writes the rows of one window's pane as files and publishes them (see module doc)."""

    def __init__(self, target: OutputTarget, files: PaneFiles) -> None:
        self._target = target
        self._files = files

    def setup(self) -> None:
        self._format = make_format(self._files.format_name, **self._files.options)

    def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
        from connectors.fileio import finish_staging

        table = pane_table(element[1])
        if table is None:
            return
        for start, rows in split_buckets(table):
            label = self._files.label(start, window)
            target = pane_target(self._target, label, pane.index)
            make_dirs(target.staging_dir)
            staged = self._files.stage(
                self._format, rows, target.staging_dir, target.extension, ""
            )
            summary = finish_staging(
                target,
                [(path, n) for path, n, _, _ in staged],
                publish=True,
                lineage_path=target.directory,
                finals=[target.final_names(count)[i] for _, _, i, count in staged],
            )
            yield {**summary, "window": label, "pane": pane.index, "timing": str(pane.timing)}


def _one_key(table: pa.Table) -> tuple[int, pa.Table]:
    """One key for every table: a window's panes are then written one after the other."""
    return 0, table


class WritePanes(beam.PTransform):
    """The streaming form of :class:`connectors.fileio.WriteFiles` (see the module docstring).

    Args:
        target: the sink's output (its directory holds one directory per window).
        files: format, options, roll-over and positions, as given to ``WriteFiles``.
        frequency: seconds between processing-time panes of rows in the global window.
    """

    def __init__(
        self, target: OutputTarget, files: PaneFiles, frequency: int = DEFAULT_TRIGGERING_FREQUENCY
    ) -> None:
        super().__init__()
        self._frequency = frequency
        self._bucketed = bool(files.window_size)
        self._write = _WritePaneFn(target, files)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        if self._bucketed:
            # the sink's own windows name the directories: panes of the global window, so
            # each pane index is written once per directory whatever windows came in
            tables = tables | "OutOfWindows" >> beam.WindowInto(GlobalWindows())
        return (
            into_panes(tables, self._frequency, accumulating=False, label="Panes")
            | "OneKey"
            >> beam.Map(_one_key).with_output_types(beam.typehints.Tuple[int, pa.Table])
            | "GroupPane" >> beam.GroupByKey()
            | "WritePane" >> beam.ParDo(self._write)
        )
