"""Bloomberg Data License-style response files (``gethistory`` / ``getdata`` file drops), read
into the shared quote columns.

The file is a header block, then the data between ``START-OF-DATA`` and ``END-OF-DATA``::

    START-OF-FILE
    PROGRAMNAME=gethistory
    START-OF-FIELDS
    PX_OPEN
    ...
    END-OF-FIELDS
    START-OF-DATA
    AAPL US Equity|0|6|20260105|187.15|189.20|186.40|188.00|51234567|USD|
    END-OF-DATA
    END-OF-FILE

A data line is ``security|return code|field count|[date|]values...|`` (the date only for
``gethistory``). Field mnemonics become the shared columns (``PX_OPEN`` -> ``open``,
``PX_HIGH`` -> ``high``, ``PX_LOW`` -> ``low``, ``PX_LAST`` -> ``close``, ``PX_VOLUME`` ->
``volume``, ``CRNCY`` -> ``quote_currency``; others lower-cased); ``symbol`` is the
security's ticker (``AAPL US Equity`` -> ``AAPL``), ``security`` the whole identifier and
``ts`` the date as an ISO-8601 UTC midnight (``2026-01-05T00:00:00Z``). Values stay text; Bloomberg's ``N.A.``-style markers and
empty fields become nulls.

Rejects (payload = the line): ``provider_error`` for a non-zero return code (an unknown
security), ``column_count`` when a line does not hold the declared fields. A file without
``START-OF-FIELDS`` or whose data never reaches ``END-OF-DATA`` (a truncated drop) is a
``CorruptFileError``: part of a drop must not pass for all of it. Offsets are physical lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import pyarrow as pa

from connectors import records
from connectors.files.base import CorruptFileError, ReadChunk, check_batch_size, open_input
from connectors.records import Reject

MNEMONICS = {
    "PX_OPEN": "open",
    "PX_HIGH": "high",
    "PX_LOW": "low",
    "PX_LAST": "close",
    "PX_VOLUME": "volume",
    "CRNCY": "quote_currency",
}
NULLS = frozenset({"", "N.A.", "N.S.", "N.D.", "FLD UNKNOWN"})


@dataclass(frozen=True)
class BloombergFormat:
    """A Data License response file; takes no options."""

    name: ClassVar[str] = "bloomberg_dl"
    extensions: ClassVar[tuple[str, ...]] = ()  # drops are .out/.txt/.dif: name the format

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        check_batch_size(batch_size)
        with open_input(path) as stream:
            lines = stream.read().decode("utf-8", "replace").splitlines()
        fields, history, first, last = _layout(lines, path)
        columns = ["symbol", "security", *(["ts"] if history else []), *_names(fields)]
        rows: list[list[str | None]] = []
        offsets: list[int] = []
        rejects: list[Reject] = []
        for number in range(first, last):
            line = lines[number - 1]
            if not line.strip():
                continue
            row, problem = _parse(line, len(fields), history)
            if problem is not None:
                rejects.append(Reject(path, number, line.encode("utf-8"), *problem))
            else:
                rows.append(row)
                offsets.append(number)
            if len(rows) + len(rejects) == batch_size:
                yield _chunk(columns, rows, offsets, rejects, path)
                rows, offsets, rejects = [], [], []
        if rows or rejects:
            yield _chunk(columns, rows, offsets, rejects, path)

    def open_writer(self, sink: BinaryIO) -> None:
        raise ValueError("bloomberg_dl is an input format; write csv or parquet instead")


def _layout(lines: list[str], path: str) -> tuple[list[str], bool, int, int]:
    """(field mnemonics, whether lines carry a date, first and end data line numbers)."""
    marks = {line.strip(): i + 1 for i, line in reversed(list(enumerate(lines)))}
    for needed in ("START-OF-FILE", "START-OF-FIELDS", "END-OF-FIELDS", "START-OF-DATA"):
        if needed not in marks:
            raise CorruptFileError(path, f"not a Data License response: no {needed} line")
    if "END-OF-DATA" not in marks:
        raise CorruptFileError(path, "truncated Data License response: no END-OF-DATA line")
    fields = [f.strip() for f in lines[marks["START-OF-FIELDS"] : marks["END-OF-FIELDS"] - 1]]
    header = lines[: marks["START-OF-DATA"]]
    history = any(h.strip().upper() == "PROGRAMNAME=GETHISTORY" for h in header)
    return [f for f in fields if f], history, marks["START-OF-DATA"] + 1, marks["END-OF-DATA"]


def _names(fields: list[str]) -> list[str]:
    return [MNEMONICS.get(f, f.lower()) for f in fields]


def _parse(
    line: str, n_fields: int, history: bool
) -> tuple[list[str | None], tuple[str, str] | None]:
    parts = line.rstrip("\r").split("|")
    if parts and parts[-1] == "":
        parts = parts[:-1]  # every line ends with a '|'
    if len(parts) < 3:
        return [], (
            f"expected 'security|code|count|...', got {len(parts)} field(s)",
            "column_count",
        )
    security, code = parts[0].strip(), parts[1].strip()
    if code != "0":
        return [], (f"{security}: Data License return code {code}", "provider_error")
    values = parts[3:]
    expected = n_fields + (1 if history else 0)
    if len(values) != expected:
        return [], (f"expected {expected} values, got {len(values)}", "column_count")
    cells: list[str | None] = [None if v.strip() in NULLS else v.strip() for v in values]
    if history and cells[0] is not None and len(cells[0]) == 8 and cells[0].isdigit():
        cells[0] = f"{cells[0][:4]}-{cells[0][4:6]}-{cells[0][6:]}T00:00:00Z"
    return [security.split()[0].upper(), security, *cells], None


def _chunk(
    columns: list[str],
    rows: list[list[str | None]],
    offsets: list[int],
    rejects: list[Reject],
    path: str,
) -> ReadChunk:
    data = {c: pa.array([r[i] for r in rows], pa.string()) for i, c in enumerate(columns)}
    data["provider"] = pa.array(["bloomberg"] * len(rows), pa.string())
    return ReadChunk(records.with_positions(pa.table(data), path, offsets), list(rejects))
