"""Alpha Vantage ``TIME_SERIES_DAILY`` / ``TIME_SERIES_INTRADAY`` JSON responses, as the API
returns them or as saved files, read into the shared quote columns.

A response is one JSON document: ``"Meta Data"`` (``"2. Symbol"``, ``"4. Interval"`` for
intraday, the time zone) and one ``"Time Series (Daily)"`` or ``"Time Series (5min)"``-style
object of timestamp -> ``{"1. open", "2. high", "3. low", "4. close", "5. volume"}`` (the
adjusted series' ``"5. adjusted close"``/``"6. volume"`` are read too). Rows come out as
``symbol, ts, open, high, low, close, volume, provider``, values as text like CSV (types are
the validate step's job; ``ts`` is ISO-8601 UTC: a daily key is its date's UTC midnight, an
intraday key is read in the response's ``Time Zone``, US/Eastern, and converted), in the response's order (newest first, as the API sends it).

A response is small (100 points compact, ~5,000 daily points full), so it is parsed whole.
The API reports problems in the body with HTTP 200 (``"Error Message"``, ``"Note"``,
``"Information"``: bad symbol, rate limit, key): that is a ``CorruptFileError`` quoting the
API, not a file of no rows. A data point that is not an object of those fields is a reject
(rule ``parse``). Offsets are the data point's ordinal (1-based) in the series: the original
of a rejected point is its JSON, kept in the reject.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar
from zoneinfo import ZoneInfo

import pyarrow as pa

from connectors import records
from connectors.files.base import CorruptFileError, ReadChunk, check_batch_size, open_input
from connectors.records import Reject

FIELDS = {
    "1. open": "open",
    "2. high": "high",
    "3. low": "low",
    "4. close": "close",
    "5. volume": "volume",
    "6. volume": "volume",  # TIME_SERIES_DAILY_ADJUSTED
    "5. adjusted close": "adj_close",
}
OUTPUT = ("symbol", "ts", "open", "high", "low", "close", "volume", "provider")
_API_PROBLEMS = ("Error Message", "Note", "Information")


@dataclass(frozen=True)
class AlphaVantageFormat:
    """An Alpha Vantage time-series response; takes no options."""

    name: ClassVar[str] = "alpha_vantage_json"
    extensions: ClassVar[tuple[str, ...]] = ()  # a .json like JSONL's: name the format

    def read(self, path: str, batch_size: int) -> Iterator[ReadChunk]:
        check_batch_size(batch_size)
        with open_input(path) as stream:
            raw = stream.read()
        return decode(raw, path, batch_size)

    def open_writer(self, sink: BinaryIO) -> None:
        raise ValueError("alpha_vantage_json is an input format; write jsonl or parquet instead")


def decode(raw: bytes, path: str, batch_size: int) -> Iterator[ReadChunk]:
    """The chunks of one response body; ``path`` (a file, or the URL without its key) is the
    rows' source position and names the response in errors."""
    symbol, series, zone = parse_response(raw, path)
    return _chunks(symbol, series, zone, path, batch_size)


def _chunks(
    symbol: str, series: dict[str, Any], zone: str, path: str, batch_size: int
) -> Iterator[ReadChunk]:
    rows: list[dict[str, Any]] = []
    offsets: list[int] = []
    rejects: list[Reject] = []
    for ordinal, (stamp, point) in enumerate(series.items(), start=1):
        row = _row(symbol, stamp, point, zone)
        if row is None:
            payload = json.dumps({stamp: point}).encode("utf-8")
            error = f"data point {stamp!r} is not an object of open/high/low/close/volume"
            rejects.append(Reject(path, ordinal, payload, error, "parse"))
        else:
            rows.append(row)
            offsets.append(ordinal)
        if len(rows) + len(rejects) == batch_size:
            yield _chunk(rows, offsets, rejects, path)
            rows, offsets, rejects = [], [], []
    if rows or rejects:
        yield _chunk(rows, offsets, rejects, path)


def parse_response(raw: bytes, where: str) -> tuple[str, dict[str, Any], str]:
    """(symbol, timestamp -> data point, time zone) of a response body; CorruptFileError
    naming the API's own message when it is an error, a rate-limit note or not a series."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(where, f"not an Alpha Vantage JSON response: {exc}") from None
    if not isinstance(doc, dict):
        raise CorruptFileError(where, "not an Alpha Vantage JSON response: not an object")
    for key in _API_PROBLEMS:
        if key in doc:
            raise CorruptFileError(where, f"Alpha Vantage answered {key!r}: {doc[key]}")
    meta = doc.get("Meta Data")
    series_keys = [k for k in doc if k.startswith("Time Series")]
    if not isinstance(meta, dict) or len(series_keys) != 1:
        raise CorruptFileError(
            where,
            "not an Alpha Vantage time series: expected 'Meta Data' and one 'Time Series (...)'",
        )
    symbol = meta.get("2. Symbol")
    series = doc[series_keys[0]]
    if not isinstance(symbol, str) or not isinstance(series, dict):
        raise CorruptFileError(where, "Alpha Vantage response without '2. Symbol' or series object")
    zone = next((v for k, v in meta.items() if k.endswith("Time Zone")), "US/Eastern")
    return symbol.upper(), series, str(zone)


def utc_text(stamp: str, zone: str) -> str | None:
    """A series key as ISO-8601 UTC: a date is that trading date's UTC midnight; an intraday
    time is in the response's time zone (US/Eastern) and converted. None when unreadable."""
    try:
        if len(stamp) == 10:
            return dt.date.fromisoformat(stamp).isoformat() + "T00:00:00Z"
        local = dt.datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(zone))
    except (ValueError, KeyError):
        return None
    return local.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _row(symbol: str, stamp: str, point: Any, zone: str) -> dict[str, Any] | None:
    ts = utc_text(stamp, zone)
    if not isinstance(point, dict) or ts is None:
        return None
    values = {FIELDS[k]: v for k, v in point.items() if k in FIELDS}
    if not {"open", "high", "low", "close", "volume"} <= values.keys():
        return None
    text = {k: None if v is None else str(v) for k, v in values.items()}
    return {"symbol": symbol, "ts": ts, **text, "provider": "alpha_vantage"}


def _chunk(rows: list[dict], offsets: list[int], rejects: list[Reject], path: str) -> ReadChunk:
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in OUTPUT})
    return ReadChunk(records.with_positions(table, path, offsets), list(rejects))
