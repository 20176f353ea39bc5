"""Beam transforms over the file formats: read globs into Arrow batches, write sharded files.

Reading: the glob is expanded when the pipeline is built (so "no file matches" fails before
anything runs, and lineage knows the inputs). Each file — or each Parquet row group, so big
files spread across workers — becomes one read task. Undecodable records leave on the
``dead_letters`` output with file and line; a corrupt file fails the run naming the file.

Writing: each bundle writes its own temporary file(s) under ``<dir>/.beamwright-tmp-<run>/``;
when every bundle is done one finalizing step names them ``part-00000-of-00003.parquet``,
replaces the old files (mode ``overwrite``), and removes the temporary directory. A failed run
therefore never leaves half-written files among the outputs.
"""

from __future__ import annotations

import posixpath
import queue
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms.window import GlobalWindows

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.files.base import open_output
from connectors.files.registry import infer_format, make_format
from connectors.metrics import ROWS_DEAD, ROWS_IN, ROWS_OUT, ROWS_WRITTEN, TALLY, NodeCounters
from connectors.records import dead_letters_for_rejects

DEAD_LETTERS = "dead_letters"
ROWS = "rows"
TMP_PREFIX = ".beamwright-tmp-"
WRITE_MODES = ("overwrite", "append", "error_if_exists")


def ensure_directory(path: str) -> None:
    """Create ``path`` if missing (a no-op on object stores, which have no directories)."""
    if not FileSystems.exists(path):
        try:
            FileSystems.mkdirs(path)
        except OSError:
            if not FileSystems.exists(path):  # lost a race with another worker: fine
                raise


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
    """The read tasks for a source; Parquet files are split by row group."""
    paths = match_files(pattern)
    tasks: list[ReadTask] = []
    for path in paths:
        fmt_name = format_name or infer_format(path)
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
            self._counters.inc("files")
            FileSystems.report_source_lineage(task.path)  # Beam's own Lineage metric
        if task.row_groups is not None:
            chunks = fmt.read(task.path, self._batch_size, row_groups=task.row_groups)
        else:
            chunks = fmt.read(task.path, self._batch_size)
        for chunk in chunks:
            n_rows, n_bad = chunk.rows.num_rows, len(chunk.rejects)
            self._counters.inc(ROWS_IN, n_rows + n_bad)
            self._counters.inc(ROWS_OUT, n_rows)
            TALLY.add(self._source, n_rows + n_bad)
            if n_rows:
                yield chunk.rows
            if n_bad:
                self._counters.inc(ROWS_DEAD, n_bad)
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTERS,
                    dead_letters_for_rejects(chunk.rejects, step=self._source, run_id=self._run_id),
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
        tasks = pbegin | "Tasks" >> beam.Create(self._tasks)
        if len(self._tasks) > 1:
            tasks = tasks | "Spread" >> beam.Reshuffle()
        outputs = tasks | "Decode" >> beam.ParDo(self._fn).with_output_types(pa.Table).with_outputs(
            DEAD_LETTERS, main=ROWS
        )
        outputs[DEAD_LETTERS].element_type = pa.Table  # tagged outputs get no type otherwise
        return outputs


# --------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WrittenFile:
    temp_path: str
    rows: int


_STOP = object()


class _BackgroundFileWriter:
    """Writes a bundle's tables into temporary files on a background thread.

    pyarrow releases the GIL while it encodes and compresses, so writing batch N overlaps the
    steps computing batch N+1 (on the benchmark this hides most of the Parquet write time).
    The queue is short, so memory stays bounded; the first write error is re-raised to the
    bundle, and the thread keeps draining so the bundle never blocks on a dead writer.
    """

    def __init__(self, fmt: Any, temp_dir: str, extension: str, max_rows: int | None) -> None:
        self._fmt = fmt
        self._temp_dir = temp_dir
        self._extension = extension
        self._max_rows = max_rows
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
                    path = posixpath.join(self._temp_dir, f"{uuid.uuid4().hex}{self._extension}")
                    sink = open_output(path)
                    writer = self._fmt.open_writer(sink)
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
    """Writes every table of a bundle into temporary files, rolling over at ``max_rows``."""

    def __init__(
        self,
        temp_dir: str,
        format_name: str,
        options: Mapping[str, Any],
        extension: str,
        max_rows: int | None,
    ) -> None:
        self._temp_dir = temp_dir
        self._format_name = format_name
        self._options = dict(options)
        self._extension = extension
        self._max_rows = max_rows

    def setup(self) -> None:
        self._format = make_format(self._format_name, **self._options)
        ensure_directory(self._temp_dir)

    def start_bundle(self) -> None:
        self._writer: _BackgroundFileWriter | None = None

    def process(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._writer = _BackgroundFileWriter(
                self._format, self._temp_dir, self._extension, self._max_rows
            )
        self._writer.put(table)

    def finish_bundle(self) -> Iterable[Any]:
        if self._writer is not None:
            for written in self._writer.finish():
                yield GlobalWindows.windowed_value(written)
            self._writer = None


class _FinalizeFn(beam.DoFn):
    """Moves the temporary files to their final names once all bundles have written."""

    def __init__(
        self, sink: str, directory: str, temp_dir: str, extension: str, mode: str, write_id: str
    ) -> None:
        self._sink = sink
        self._directory = directory
        self._temp_dir = temp_dir
        self._extension = extension
        self._mode = mode
        self._write_id = write_id

    def process(self, written: list[WrittenFile]) -> Iterable[dict[str, Any]]:
        written = sorted(written, key=lambda w: w.temp_path)
        existing = match_files(posixpath.join(self._directory, f"part-*{self._extension}"))
        if self._mode == "error_if_exists" and existing:
            raise FileExistsError(f"sink {self._sink}: {self._directory} already has output files")
        n = len(written)
        stem = "part" if self._mode != "append" else f"part-{self._write_id}"
        finals = [
            posixpath.join(self._directory, f"{stem}-{i:05d}-of-{n:05d}{self._extension}")
            for i in range(n)
        ]
        if self._mode == "overwrite":
            stale = sorted(set(existing) - set(finals))
            if stale:
                FileSystems.delete(stale)
        if written:
            FileSystems.rename([w.temp_path for w in written], finals)
        FileSystems.report_sink_lineage(self._directory)  # Beam's own Lineage metric
        sizes = (
            {m.path: m.size_in_bytes for r in FileSystems.match(finals) for m in r.metadata_list}
            if finals
            else {}
        )
        if FileSystems.exists(self._temp_dir):
            FileSystems.delete([self._temp_dir])
        rows = sum(w.rows for w in written)
        total_bytes = sum(sizes.values())
        counters = NodeCounters(self._sink)
        counters.inc(ROWS_WRITTEN, rows)
        counters.inc("files", n)
        counters.inc("bytes", total_bytes)
        yield {"sink": self._sink, "files": finals, "rows": rows, "bytes": total_bytes}


class WriteFiles(beam.PTransform):
    """Write Arrow batches as a directory of sharded files in one format.

    Args:
        directory: output directory (local path, gs://...).
        sink_name: names counters.
        format_name: jsonl, csv, parquet or avro.
        options: format options (e.g. ``compression`` for Parquet, zstd by default).
        mode: overwrite (replace earlier ``part-*`` files), append, or error_if_exists.
        max_rows_per_file: roll over to a new file after this many rows.
        run_id: names the temporary directory (and appended files).
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
    ) -> None:
        super().__init__()
        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {WRITE_MODES}, not {mode!r}")
        # one token per write: a continuous run writes many times under one run id
        write_id = uuid.uuid4().hex[:12]
        run_id = run_id or write_id
        fmt = make_format(format_name, **(options or {}))
        extension = "." + fmt.extensions[0].lstrip(".")
        directory = directory.rstrip("/")
        temp_dir = posixpath.join(directory, f"{TMP_PREFIX}{run_id}-{write_id}")
        self._write = _WriteBundleFn(
            temp_dir, format_name, options or {}, extension, max_rows_per_file
        )
        self._finalize = _FinalizeFn(sink_name, directory, temp_dir, extension, mode, write_id)

    def expand(self, tables: beam.PCollection) -> beam.PCollection:
        return (
            tables
            | "WriteTemp" >> beam.ParDo(self._write)
            | "Collect" >> beam.combiners.ToList()
            | "Finalize" >> beam.ParDo(self._finalize)
        )
