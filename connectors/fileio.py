"""Beam transforms over the file formats: read globs into Arrow batches, write sharded files.

Reading: the glob is expanded when the pipeline is built (so "no file matches" fails before
anything runs, and lineage knows the inputs). Each file — or each Parquet row group, so big
files spread across workers — becomes one read task. Undecodable records leave on the
``dead_letters`` output with file and line; a corrupt file fails the run naming the file.

Writing: each bundle writes its own file(s) into the sink's staging directory
(``<dir>/.beamwright-tmp-<run>-<write>/``); when every bundle is done one finalizing step
records what was staged. Publishing (final names ``part-00000-of-00003.parquet``, the ownership
manifest, replacing the sink's previous files) is :mod:`connectors.committer`'s job: done by
the driver after the run's checks passed, or, for a ``WriteFiles`` used on its own in a Beam
pipeline, by the finalizing step itself. Unbounded input is written per window and pane
instead, each pane published as it fires: :mod:`connectors.panes`.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.committer import OutputTarget, make_dirs
from connectors.failpoints import failpoint
from connectors.files.base import ReadChunk, open_output
from connectors.files.registry import infer_format, make_format
from connectors.metrics import (
    BYTES,
    FILES,
    ROWS_DEAD,
    ROWS_IN,
    ROWS_OUT,
    ROWS_WRITTEN,
    TALLY,
    NodeCounters,
)
from connectors.names import CombineGlobally, labelled_pardo
from connectors.records import dead_letters_for_rejects, plain_positions

DEAD_LETTERS = "dead_letters"
ROWS = "rows"
WRITE_MODES = ("overwrite", "append", "error_if_exists")


@dataclass(frozen=True)
class ReadTask:
    """One unit of reading: a file, or some row groups of a Parquet file."""

    path: str
    row_groups: tuple[int, ...] | None = None


def match_files(pattern: str) -> list[str]:
    """Paths matching ``pattern`` (sorted), through Beam's FileSystems (local, gs://, ...)."""
    try:
        results = FileSystems.match([pattern])
    except Exception:  # Beam raises BeamIOError for "nothing matched" on some filesystems
        return []
    return sorted(m.path for r in results for m in r.metadata_list if not _is_dir(m.path))


def _is_dir(path: str) -> bool:
    return path.endswith("/")


def plan_reads(pattern: str, format_name: str | None, options: Mapping[str, Any]) -> list[ReadTask]:
    """The read tasks for a source; Parquet files are split by row group.

    Files that cannot be read at all fail here, before the run, with ``CorruptFileError``: a
    Parquet footer that does not decode (reading it counts the row groups) and a 0-byte Avro
    file (checked here for the same reason; a 0-byte Parquet file fails its footer read).
    """
    from connectors.files.base import reject_empty_file

    paths = match_files(pattern)
    tasks: list[ReadTask] = []
    for path in paths:
        fmt_name = format_name or infer_format(path)
        if fmt_name == "avro":
            reject_empty_file(path, "Avro")
        if fmt_name == "parquet":
            fmt = make_format("parquet", **options)
            groups = fmt.row_group_count(path)
            if groups > 1:
                tasks.extend(ReadTask(path, (g,)) for g in range(groups))
                continue
        tasks.append(ReadTask(path))
    return tasks


class _ReadFn(beam.DoFn):
    def __init__(
        self,
        source: str,
        format_name: str | None,
        options: Mapping[str, Any],
        batch_size: int,
        run_id: str,
    ) -> None:
        self._source = source
        self._format_name = format_name
        self._options = dict(options)
        self._batch_size = batch_size
        self._run_id = run_id

    def setup(self) -> None:
        self._counters = NodeCounters(self._source)

    def process(self, task: ReadTask) -> Iterable[Any]:
        fmt = make_format(self._format_name or infer_format(task.path), **self._options)
        if task.row_groups is None or task.row_groups[0] == 0:
            self._counters.inc(FILES)
            FileSystems.report_source_lineage(task.path)  # Beam's own Lineage metric
        if task.row_groups is not None:
            chunks = fmt.read(task.path, self._batch_size, row_groups=task.row_groups)
        else:
            chunks = fmt.read(task.path, self._batch_size)
        yield from emit_chunks(chunks, self._counters, self._source, self._run_id)


def emit_chunks(
    chunks: Iterable[ReadChunk], counters: NodeCounters, source: str, run_id: str
) -> Iterator[Any]:
    """A reading DoFn's outputs for decoded chunks: the rows on the main output, the rejects
    as dead letters (``step`` = ``source``) on ``dead_letters``, counted in, out and dead as
    every source counts them, so the run's summary adds up whichever source read the rows."""
    for chunk in chunks:
        n_rows, n_bad = chunk.rows.num_rows, len(chunk.rejects)
        counters.inc(ROWS_IN, n_rows + n_bad)
        counters.inc(ROWS_OUT, n_rows)
        TALLY.add(source, n_rows + n_bad)
        if n_rows:
            yield chunk.rows
        if n_bad:
            counters.inc(ROWS_DEAD, n_bad)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, dead_letters_for_rejects(chunk.rejects, step=source, run_id=run_id)
            )


class ReadFiles(beam.PTransform):
    """Read planned file tasks into Arrow batches; outputs ``rows`` and ``dead_letters``.

    Args:
        tasks: from :func:`plan_reads` (or ``[ReadTask(path)]``).
        source_name: names counters and the dead letters' ``step``.
        format_name: jsonl, csv, parquet, avro, or None to infer from each file's extension.
        options: format options.
        batch_size: rows per Arrow batch.
        run_id: stamped on dead letters.
    """

    def __init__(
        self,
        tasks: list[ReadTask],
        *,
        source_name: str,
        format_name: str | None = None,
        options: Mapping[str, Any] | None = None,
        batch_size: int = 10_000,
        run_id: str = "",
    ) -> None:
        super().__init__()
        self._tasks = tasks
        self._fn = _ReadFn(source_name, format_name, options or {}, batch_size, run_id)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return read_each(pbegin, self._tasks, self._fn, each_label="Tasks", read_label="Decode")


def read_each(
    pbegin: beam.pvalue.PBegin,
    elements: Sequence[Any],
    fn: beam.DoFn,
    *,
    each_label: str,
    read_label: str,
) -> beam.pvalue.DoOutputsTuple:
    """``fn`` (yielding tables and tagged ``dead_letters`` tables) run once per element, the
    elements spread across workers when there are several; outputs ``rows`` and
    ``dead_letters``, both typed ``pa.Table``."""
    # not beam.Create, whose inner labels are Beam's (connectors.names); its reshuffle of
    # several elements is the Spread below
    each = pbegin | "Impulse" >> beam.Impulse() | each_label >> beam.FlatMap(_each, elements)
    if len(elements) > 1:
        each = each | "Spread" >> beam.Reshuffle()
    outputs = each | labelled_pardo(read_label, fn).with_output_types(pa.Table).with_outputs(
        DEAD_LETTERS, main=ROWS
    )
    outputs[DEAD_LETTERS].element_type = pa.Table  # tagged outputs get no type otherwise
    return outputs


def _each(_impulse: bytes, elements: list[Any]) -> list[Any]:
    return elements


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WrittenFile:
    temp_path: str
    rows: int
    final: str | None = None  # chosen by the writer (shards, windows), else part-... in order


_STOP = object()


class _BackgroundFileWriter:
    """Writes a bundle's tables into staging files on a background thread.

    pyarrow releases the GIL while it encodes and compresses, so writing batch N overlaps the
    steps computing batch N+1 (on the benchmark this hides most of the Parquet write time).
    The queue is short, so memory stays bounded; the first write error is re-raised to the
    bundle, and the thread keeps draining so the bundle never blocks on a dead writer.
    """

    def __init__(
        self, fmt: Any, temp_dir: str, extension: str, max_rows: int | None, keep_positions: bool
    ) -> None:
        self._fmt = fmt
        self._temp_dir = temp_dir
        self._extension = extension
        self._max_rows = max_rows
        self._keep_positions = keep_positions
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._done: list[WrittenFile] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="beamwright-writer")
        self._thread.start()

    def put(self, table: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def finish(self) -> list[WrittenFile]:
        self._queue.put(_STOP)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._done

    def _run(self) -> None:
        writer: Any = None
        sink: Any = None
        path = ""
        try:
            while (table := self._queue.get()) is not _STOP:
                if writer is not None and self._max_rows and writer.rows_written >= self._max_rows:
                    writer.close()
                    sink.close()
                    self._done.append(WrittenFile(path, writer.rows_written))
                    writer = None
                if writer is None:
                    path = f"{self._temp_dir}/{uuid.uuid4().hex}{self._extension}"
                    sink = open_output(path)
                    writer = self._fmt.open_writer(sink)
                    writer.keep_positions = self._keep_positions
                if self._keep_positions:
                    table = plain_positions(table)
                writer.write(table)
            if writer is not None:
                writer.close()
                sink.close()
                self._done.append(WrittenFile(path, writer.rows_written))
        except BaseException as exc:  # handed to the bundle thread in put()/finish()
            self._error = exc
            while self._queue.get() is not _STOP:
                pass


class _WriteBundleFn(beam.DoFn):
    """Writes every table of a bundle into staging files, rolling over at ``max_rows``."""

    def __init__(
        self,
        temp_dir: str,
        format_name: str,
        options: Mapping[str, Any],
        extension: str,
        max_rows: int | None,
        keep_positions: bool,
    ) -> None:
        self._temp_dir = temp_dir
        self._format_name = format_name
        self._options = dict(options)
        self._extension = extension
        self._max_rows = max_rows
        self._keep_positions = keep_positions

    def setup(self) -> None:
        self._format = make_format(self._format_name, **self._options)
        make_dirs(self._temp_dir)

    def start_bundle(self) -> None:
        self._writer: _BackgroundFileWriter | None = None

    def process(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = _BackgroundFileWriter(
                self._format, self._temp_dir, self._extension, self._max_rows, self._keep_positions
            )
        self._writer.put(table)

    def finish_bundle(self) -> Iterable[Any]:
        if self._writer is not None:
            for written in self._writer.finish():
                yield GlobalWindows.windowed_value(written)
            self._writer = None


def finish_staging(
    target: OutputTarget,
    staged: list[tuple[str, int]],
    *,
    publish: bool,
    lineage_path: str,
    finals: list[str] | None = None,
) -> dict[str, Any]:
    """After every bundle of a write: record what was staged, publish it when the write is
    used on its own (beamwright's runs publish from the driver), count it, and say what it is.

    ``staged`` holds (staging file, rows), ``finals`` their final names when the writer chose
    them (see :func:`connectors.committer.write_staged_listing`); ``lineage_path`` is what
    Beam's own Lineage metric names (the directory of a file sink, the file of a report).
    """
    from connectors.committer import OutputCommitter, write_staged_listing

    listing = write_staged_listing(target, staged, finals)
    failpoint("stage:listed")
    files = [f"{target.directory}/{f['final']}" for f in listing["files"]]
    if publish:
        committer = OutputCommitter(target)
        committer.claim()
        files = committer.publish()
    FileSystems.report_sink_lineage(lineage_path)
    rows = sum(f["rows"] for f in listing["files"])
    total_bytes = sum(f["bytes"] for f in listing["files"])
    counters = NodeCounters(target.sink)
    counters.inc(ROWS_WRITTEN, rows)
    counters.inc(FILES, len(files))
    counters.inc(BYTES, total_bytes)
    return {"sink": target.sink, "files": files, "rows": rows, "bytes": total_bytes}


class _FinalizeFn(beam.DoFn):
    """Records what every bundle staged (and publishes it when used on its own)."""

    def __init__(self, target: OutputTarget, publish: bool) -> None:
        self._target = target
        self._publish = publish

    def process(self, written: list[WrittenFile]) -> Iterable[dict[str, Any]]:
        staged = [(w.temp_path, w.rows) for w in written]
        named = [w.final for w in written if w.final is not None]
        yield finish_staging(
            self._target,
            staged,
            publish=self._publish,
            lineage_path=self._target.directory,
            finals=named if named else None,
        )


def _group_keys(table: pa.Table, files: Any) -> Iterator[tuple[int, pa.Table]]:
    """A table's rows keyed by their window (start µs; 0 without windows): one group, one
    writer per window. Encoded here when the format can (``PaneFiles.pre_encode``)."""
    from connectors.panes import split_buckets

    if not table.num_rows:
        return
    table = files.pre_encode(make_format(files.format_name, **files.options), table)
    for start, rows in split_buckets(table):
        yield (0 if start is None else start), rows


class _WriteGroupFn(beam.DoFn):
    """Stages one group's files (a window's, or all rows for ``shards`` alone) with their final
    names: ``<window>/part-00003-of-00025`` (see ``PaneFiles.stage``)."""

    def __init__(self, target: OutputTarget, files: Any) -> None:
        self._target = target
        self._files = files

    def setup(self) -> None:
        self._format = make_format(self._files.format_name, **self._files.options)
        make_dirs(self._target.staging_dir)

    def process(self, element: tuple[int, Iterable[pa.Table]]) -> Iterator[WrittenFile]:
        from connectors.panes import pane_table

        table = pane_table(element[1])
        if table is None:
            return
        t = self._target
        label = self._files.label(element[0] if self._files.window_size else None)
        staged = self._files.stage(
            self._format, table, t.staging_dir, t.extension, f"{label or 'all'}-"
        )
        for path, rows, index, count in staged:
            final = t.final_names(count)[index]
            yield WrittenFile(path, rows, f"{label}/{final}" if label else final)


class WriteFiles(beam.PTransform):
    """Write Arrow batches as a directory of sharded files in one format.

    The sink owns the directory (see :mod:`connectors.committer`): it stages its files and
    publishes them with an ownership manifest; ``overwrite`` replaces only files of its own
    earlier manifest, and never deletes a file it did not write.

    Args:
        directory: output directory (local path, gs://...).
        sink_name: names counters and the manifest's owner.
        format_name: jsonl, csv, parquet or avro.
        options: format options (e.g. ``compression`` for Parquet, zstd by default).
        mode: overwrite (replace this sink's earlier files), append, or error_if_exists.
        max_rows_per_file: roll over to a new file after this many rows.
        run_id: names the staging directory (and the manifest's run).
        pipeline_name: the manifest's owner, with ``sink_name``.
        force: write into a directory holding files this sink does not own (they are kept).
        keep_positions: keep the ``_bw_source``/``_bw_offset`` columns in the files, so
            readers downstream can deduplicate on the source position.
        publish: publish at the end of the pipeline (default, for use in any Beam pipeline);
            beamwright's runs pass False and publish from the driver once the run's checks
            passed (:attr:`target` says what to publish).
        triggering_frequency: on unbounded input, seconds between the processing-time panes
            of rows in the global window. Unbounded input is written per window and pane, each
            pane published on its own (:mod:`connectors.panes`); ``publish`` and ``mode`` then
            do not apply.
        shards: write exactly this many files per window (or per write without windows; per
            pane on unbounded input), row i of the rows' fixed order in file i mod shards,
            instead of one file per bundle rolled over at ``max_rows_per_file``. Without
            windows all rows then meet on one worker.
        window_size: the rows carry their event-time window's start (µs) in
            ``connectors.panes.BUCKET_COLUMN`` (``transforms.time_buckets``): each window's
            files go to a directory of their own, ``<start>_<end>/part-...``, listed in the
            sink's manifest (on unbounded input: the window directory's manifest).
    """

    def __init__(
        self,
        directory: str,
        *,
        sink_name: str,
        format_name: str = "parquet",
        options: Mapping[str, Any] | None = None,
        mode: str = "overwrite",
        max_rows_per_file: int | None = 1_000_000,
        run_id: str = "",
        pipeline_name: str = "",
        force: bool = False,
        keep_positions: bool = False,
        publish: bool = True,
        where: str = "",
        triggering_frequency: int = 60,
        shards: int | None = None,
        window_size: int | None = None,
    ) -> None:
        super().__init__()
        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {WRITE_MODES}, not {mode!r}")
        if shards is not None and shards < 1:
            raise ValueError(f"shards must be 1 or more, not {shards}")
        from connectors.panes import PaneFiles

        # one token per write: a continuous run writes many times under one run id
        write_id = uuid.uuid4().hex[:12]
        fmt = make_format(format_name, **(options or {}))
        self.target = OutputTarget(
            directory=directory.rstrip("/"),
            pipeline=pipeline_name,
            sink=sink_name,
            mode=mode,
            run_id=run_id or write_id,
            write_id=write_id,
            extension="." + fmt.extensions[0].lstrip("."),
            force=force,
            where=where,
        )
        self._write = _WriteBundleFn(
            self.target.staging_dir,
            format_name,
            options or {},
            self.target.extension,
            max_rows_per_file,
            keep_positions,
        )
        self._finalize = _FinalizeFn(self.target, publish)
        self._pane_files = PaneFiles(
            format_name,
            dict(options or {}),
            max_rows_per_file,
            keep_positions,
            shards=shards,
            window_size=window_size,
        )
        self._triggering_frequency = triggering_frequency

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        from connectors.panes import WritePanes, is_streaming

        if is_streaming(tables):
            panes = WritePanes(self.target, self._pane_files, self._triggering_frequency)
            return tables | "WritePanes" >> panes
        if self._pane_files.shards or self._pane_files.window_size:
            written = (
                tables
                | "GroupKeys"
                >> beam.FlatMap(_group_keys, self._pane_files).with_output_types(
                    beam.typehints.Tuple[int, pa.Table]
                )
                | "Group" >> beam.GroupByKey()
                | "WriteGroups" >> beam.ParDo(_WriteGroupFn(self.target, self._pane_files))
            )
        else:
            written = tables | "WriteTemp" >> beam.ParDo(self._write)
        return (
            written
            | "Collect" >> CombineGlobally(beam.combiners.ToListCombineFn())
            | "Finalize" >> beam.ParDo(self._finalize)
        )
