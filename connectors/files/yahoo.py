"""Yahoo Finance history CSV (``Date,Open,High,Low,Close,Adj Close,Volume``), one file per
symbol, read into the quote columns every market-data format here shares.

Yahoo's download carries no symbol: it is the file's name (``AAPL.csv`` -> ``AAPL``), or the
``symbol`` option. Columns are renamed to ``ts, open, high, low, close, adj_close, volume``
(``ts`` the trading date as an ISO-8601 UTC midnight, like every quote format here) and
``symbol`` and ``provider`` are added; values stay text (``null`` spellings as Yahoo
writes them become nulls), so that types are checked in one place, the validate step. Rows,
line numbers and rejects are the CSV reader's (:mod:`connectors.files.csvfile`).

Writing is not supported: this is an input format.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from connectors.files.base import CorruptFileError, ReadChunk
from connectors.files.csvfile import CsvFormat
from connectors.records import POSITION_COLUMNS

COLUMNS = {
    "Date": "ts",
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}
"""Yahoo's header -> the shared quote column."""


@dataclass(frozen=True)
class YahooCsvFormat:
    """Yahoo history CSV; ``symbol`` overrides the one taken from the file name."""

    symbol: str | None = None

    name: ClassVar[str] = "yahoo_csv"
    extensions: ClassVar[tuple[str, ...]] = ()  # a .csv like any other: name the format

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        symbol = self.symbol or os.path.basename(path).split(".")[0].upper()
        csv = CsvFormat(null_values=("", "null", "NaN"))
        for chunk in csv.read(path, batch_size):
            yield ReadChunk(_quotes(chunk.rows, path, symbol), chunk.rejects)

    def open_writer(self, sink: BinaryIO) -> None:
        raise ValueError("yahoo_csv is an input format; write csv or parquet instead")


def _quotes(rows: pa.Table, path: str, symbol: str) -> pa.Table:
    missing = [c for c in COLUMNS if c != "Adj Close" and c not in rows.column_names]
    if missing:
        raise CorruptFileError(
            path, f"not a Yahoo history CSV: no column(s) {', '.join(missing)} in the header"
        )
    data = {new: rows.column(old) for old, new in COLUMNS.items() if old in rows.column_names}
    data["ts"] = pc.binary_join_element_wise(data["ts"], "T00:00:00Z", "")  # a trading date
    n = rows.num_rows
    front = {"symbol": pa.array([symbol] * n, pa.string())}
    back = {"provider": pa.array(["yahoo"] * n, pa.string())}
    positions = {c: rows.column(c) for c in POSITION_COLUMNS}
    return pa.table(front | data | back | positions)
