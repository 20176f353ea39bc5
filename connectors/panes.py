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
import hashlib
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
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
from connectors.records import OFFSET_COLUMN, SOURCE_COLUMN, plain_positions

DEFAULT_TRIGGERING_FREQUENCY = 60
GLOBAL_LABEL = "global"


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
    """How a pane's files are written (the ``WriteFiles`` settings that apply to them)."""

    format_name: str
    options: dict[str, Any]
    max_rows: int | None
    keep_positions: bool


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
        label = window_label(window)
        target = pane_target(self._target, label, pane.index)
        make_dirs(target.staging_dir)
        step = self._files.max_rows or table.num_rows
        staged = []
        for shard, start in enumerate(range(0, table.num_rows, step)):
            path = f"{target.staging_dir}/{shard:05d}{target.extension}"
            with open_output(path) as sink:
                writer = self._format.open_writer(sink)
                writer.keep_positions = self._files.keep_positions
                writer.write(table.slice(start, step))
                writer.close()
            staged.append((path, writer.rows_written))
        summary = finish_staging(target, staged, publish=True, lineage_path=target.directory)
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
        self._write = _WritePaneFn(target, files)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return (
            into_panes(tables, self._frequency, accumulating=False, label="Panes")
            | "OneKey"
            >> beam.Map(_one_key).with_output_types(beam.typehints.Tuple[int, pa.Table])
            | "GroupPane" >> beam.GroupByKey()
            | "WritePane" >> beam.ParDo(self._write)
        )
