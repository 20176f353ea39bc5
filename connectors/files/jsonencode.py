"""Arrow values as JSON text: for the JSONL writer, and for nested columns in CSV.

Types JSON lacks are written as strings: timestamps, dates and times in ISO-8601, decimals in
full precision (a JSON number would round them), binary as base64. Top-level columns are
encoded with vectorised Arrow kernels; the per-value Python encoder (``_ENCODE``) only runs for
values nested inside structs, lists or maps. Non-finite floats are written as ``NaN`` and
``Infinity``, as Python's json does (pyarrow and Python both read them back); with
``strict=True`` (dead-letter payloads, which other tools must parse) they are written as the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` instead, so the text is RFC 8259 JSON and
the value is not lost (``float()`` reads those strings back).
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid

import pyarrow as pa
import pyarrow.compute as pc

_ISO_DATE_TIME_SEPARATOR = " "  # what Arrow's timestamp-to-string cast puts between the parts


def _default(value: object) -> str:
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (decimal.Decimal, dt.timedelta, uuid.UUID)):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_default).encode
_STRICT_ENCODE = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=_default, allow_nan=False
).encode


def _finite(value: object) -> object:
    """``value`` with every non-finite float, however deeply nested, as its string name."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def strict_json(value: object) -> str:
    """``value`` as strict JSON text: non-finite floats become strings (see the module doc)."""
    return _STRICT_ENCODE(_finite(value))


def value_text(value: object) -> str | None:
    """A decoded value as text: strings as they are, anything else as its JSON (None stays).

    This is how a column whose values mix kinds keeps every value for the validation step.
    """
    if value is None or isinstance(value, str):
        return value
    return _ENCODE(value)


def json_lines(table: pa.Table) -> bytes:
    """Each row of ``table`` as one UTF-8 JSON object per line.

    Built column by column with Arrow compute kernels (escape, quote, join), so no Python code
    runs per row; only values nested in structs, lists or maps are encoded one by one.
    """
    if not table.num_rows:
        return b""
    rows = pc.binary_join_element_wise(json_objects(table), "\n", "")
    return "".join(rows.to_pylist()).encode("utf-8")


def json_objects(table: pa.Table, *, strict: bool = False) -> pa.Array:
    """Each row of ``table`` as the text of one JSON object (no newline), vectorised.

    ``strict``: non-finite floats as strings, never as ``NaN``/``Infinity`` tokens.
    """
    if not table.num_columns:
        return pa.array(["{}"] * table.num_rows, pa.string())
    # one join of '{"a":', a, ',"b":', b, ..., '}': each join copies every row, so one call
    # instead of one per column (and two more for the commas and braces) is most of the cost
    parts: list[object] = []
    for i, (name, column) in enumerate(zip(table.column_names, table.columns, strict=True)):
        parts += [("{" if i == 0 else ",") + _ENCODE(name) + ":", _json_values(column, strict)]
    rows = pc.binary_join_element_wise(*parts, "}", "")
    return rows.combine_chunks() if isinstance(rows, pa.ChunkedArray) else rows


def _json_values(column: pa.ChunkedArray, strict: bool = False) -> pa.ChunkedArray:
    """Each value of ``column`` as JSON text, nulls as ``null``."""
    kind = column.type
    if pa.types.is_null(kind):
        text = pa.chunked_array([pa.nulls(len(column), pa.string())])
    elif pa.types.is_boolean(kind) or pa.types.is_integer(kind):
        text = column.cast(pa.string())
    elif pa.types.is_floating(kind):
        text = _json_numbers(column, strict)
    elif pa.types.is_nested(kind) or pa.types.is_duration(kind) or pa.types.is_interval(kind):
        text = json_text(column, strict=strict)
    else:  # strings, and the types written as strings
        text = _json_strings(as_text_if_scalar(column).cast(pa.string()))
    return text.fill_null("null")


def _json_numbers(column: pa.ChunkedArray, strict: bool = False) -> pa.ChunkedArray:
    """Floats with their shortest round-trip digits, as Python's json writes them."""
    text = column.cast(pa.float64()).cast(pa.string())
    text = pc.replace_substring_regex(text, r"^(-?\d+)$", r"\1.0")  # keep 3.0 a float
    if strict:
        text = pc.replace_substring_regex(text, r"^-?nan$", '"NaN"')
        return pc.replace_substring_regex(text, r"^(-?)inf$", r'"\1Infinity"')
    text = pc.replace_substring(text, "nan", "NaN")
    return pc.replace_substring(text, "inf", "Infinity")


def _json_strings(text: pa.ChunkedArray) -> pa.ChunkedArray:
    """``text`` as quoted JSON strings, escaped as Python's json escapes them."""
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
        for control, escape in _CONTROL_ESCAPES.items():
            text = pc.replace_substring(text, control, escape)
    return pc.binary_join_element_wise('"', text, '"', "")


_CONTROL_ESCAPES = {chr(code): json.dumps(chr(code))[1:-1] for code in range(0x20)}


def json_text(column: pa.ChunkedArray | pa.Array, *, strict: bool = False) -> pa.Array:
    """Each value of ``column`` as JSON text (nulls stay null): how CSV holds nested values."""
    values = column.to_pylist(maps_as_pydicts="lossy")
    encode = strict_json if strict else _ENCODE
    return pa.array([None if v is None else encode(v) for v in values], pa.string())


def as_text_if_scalar(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Temporal, decimal and binary columns as ISO / exact / base64 text; others unchanged."""
    kind = column.type
    if pa.types.is_timestamp(kind):
        text = column.cast(pa.string())
        return pc.replace_substring(text, _ISO_DATE_TIME_SEPARATOR, "T", max_replacements=1)
    if pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_decimal(kind):
        return column.cast(pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _base64(column)
    if pa.types.is_fixed_size_binary(kind):
        return _base64(column.cast(pa.binary()))
    return column


def _base64(column: pa.ChunkedArray) -> pa.ChunkedArray:
    encoded = [
        None if value is None else base64.b64encode(value).decode("ascii")
        for value in column.to_pylist()
    ]
    return pa.chunked_array([pa.array(encoded, pa.string())])
