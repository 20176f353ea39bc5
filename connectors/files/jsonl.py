"""JSON Lines files: one JSON object per line, UTF-8.

Offsets are 1-based physical line numbers (lines end at ``\\n``; ``\\r\\n`` is one break).
Blank and whitespace-only lines are skipped, neither rows nor rejects, but still counted, so a
row's offset is always the line an editor shows. A leading UTF-8 byte-order mark is ignored.

Rejects (payload = the line's raw bytes without its line break):

- ``encoding``: the line is not valid UTF-8;
- ``parse``: not valid JSON (the error gives the column), valid JSON that is not an object
  (``expected a JSON object, got array``), an object naming a key twice (``{"a":1,"a":2}``:
  JSON allows it, but pyarrow refuses it and ``json.loads`` would silently keep the last
  value), or nesting deeper than ``MAX_DEPTH`` levels.

A 0-byte file, or one of blank lines only, reads as no rows: a file of no records.

Values are read as pyarrow infers them for each batch; see ``jsondecode`` for how batches that
mix kinds in a column are handled and why types can differ between batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from typing import BinaryIO, ClassVar

import pyarrow as pa

from connectors import records
from connectors.files.base import ReadChunk, TableWriter, check_batch_size, open_input
from connectors.files.jsondecode import Decoded, decode_lines
from connectors.files.jsonencode import json_lines, json_objects

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class JsonlFormat:
    """JSON Lines; takes no options."""

    name: ClassVar[str] = "jsonl"
    extensions: ClassVar[tuple[str, ...]] = (".jsonl", ".ndjson", ".json")

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        """Chunks of at most ``batch_size`` lines of ``path``, decoded.

        While one batch is decoded, on a thread of its own, the next one is read from the file.
        """
        check_batch_size(batch_size)
        with open_input(path) as stream, ThreadPoolExecutor(1, "beamwright-jsonl") as decoder:
            pending: Future[Decoded] | None = None
            for first_line, lines in _batches(stream, batch_size):
                ahead = decoder.submit(decode_lines, lines, first_line, path)
                if pending is not None:
                    yield from _chunks(pending.result(), path)
                pending = ahead
            if pending is not None:
                yield from _chunks(pending.result(), path)

    def open_writer(self, sink: BinaryIO) -> JsonlWriter:
        return JsonlWriter(sink)

    def encode_rows(self, table: pa.Table) -> pa.Array:
        """Each row's line (without its newline): rows are independent lines, so a sink
        splitting one table into many small files (``shards``) encodes it once instead of per
        file, where the per-call cost of the column kernels dominates (~4 ms a call for
        Nexmark's 20 columns). Written with :meth:`write_encoded`."""
        return json_objects(table)

    @staticmethod
    def write_encoded(sink: BinaryIO, rows: pa.Array) -> None:
        """Rows from :meth:`encode_rows` (any subset), the bytes ``JsonlWriter`` writes."""
        if len(rows):
            sink.write(("\n".join(rows.to_pylist()) + "\n").encode("utf-8"))


def _batches(stream: BinaryIO, batch_size: int) -> Iterator[tuple[int, list[bytes]]]:
    """The file's lines, ``batch_size`` at a time, each batch with its first line's number."""
    first_line = 1
    while lines := list(islice(stream, batch_size)):
        if first_line == 1:
            lines[0] = lines[0].removeprefix(_BOM)
        yield first_line, lines
        first_line += len(lines)


def _chunks(decoded: Decoded, path: str) -> Iterator[ReadChunk]:
    if decoded.table.num_rows or decoded.rejects:
        rows = records.with_positions(decoded.table, path, decoded.offsets)
        yield ReadChunk(rows, decoded.rejects)


class JsonlWriter(TableWriter):
    """One JSON object per row and line; see ``jsonencode`` for how values are written."""

    def _write(self, table: pa.Table) -> None:
        self._sink.write(json_lines(table))

    def _finish(self) -> None:
        self._sink.flush()
