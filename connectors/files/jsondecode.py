"""Decoding a batch of JSON Lines into an Arrow table, fast when the batch is clean.

Fast path: the batch goes to ``pyarrow.json.read_json`` in bulk, split into one part per core
parsed in parallel. Each part is a single-block read, because pyarrow 25's JSON reader
segfaults when one read has several blocks and a column's values differ in kind between them
(numbers in one block, arrays in the next); the parts' tables are joined here instead. A bulk
parse only maps rows to lines when every line holds exactly one object, so a cheap screen
(C-level builtins over the batch's lines, no per-line Python code) runs first. It also keeps
from pyarrow what else crashes it: a batch starting with a top-level ``null``, deep nesting.

Slow path, taken when the screen or pyarrow refuses the batch: blank lines are dropped and the
batch is halved until pyarrow takes each part, so a few bad lines cost a few bulk parses of
ever smaller parts. Parts of at most ``_SMALLEST_HALF`` lines that still fail are decoded line
by line with ``json.loads`` (bad lines rejected with a reason) and their good lines parsed in
bulk again. When the values of a column mix kinds (``12.5`` and ``"abc"``), pyarrow refuses
every part holding both, so the batch is decoded line by line at once and the table built from
the objects, each mixed column as text.

Types are inferred per batch, so the same column can come out differently in two batches (null
in one, string in another; pyarrow reads ISO-8601 strings as ``timestamp[s]`` while a
mixed-kind column becomes text). The validation step casts every batch to the declared schema.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import repeat
from operator import itemgetter

import pyarrow as pa
import pyarrow.json as pajson

from connectors.files.base import consecutive, is_utf8
from connectors.files.jsonencode import value_text
from connectors.records import Reject

MAX_DEPTH = 64
"""Deepest nesting accepted (the top-level object is level 1); deeper lines are rejected."""

_PARTS = os.cpu_count() or 1  # a batch is parsed in this many parts at once
_MIN_PART_BYTES = 64 << 10  # smaller batches are not worth splitting
_WHITESPACE = b" \t\r\n"
_OBJECT_LINE_ENDS = (b"}\n", b"}\r\n")
_FIRST_BYTE = itemgetter(0)
_SECOND_LAST_BYTE = itemgetter(-2)  # the byte before "\n"
_OPENING_BRACE = {ord("{")}
_CLOSING_BRACE = {ord("}")}

# A line can nest no deeper than it is long. pyarrow parses 512 levels safely (it crashes only
# far deeper), so batches of lines this short skip the opener scan below; the depth limit is
# then enforced exactly from the parsed schema. Longer lines are scanned before parsing, and
# json.loads (slow path) only ever sees lines that passed the scan.
_SHORT_LINE_BYTES = 512

# Reduces a batch to its opening brackets and line breaks: a run of more than MAX_DEPTH
# openers means some line has that many, the only way it can nest that deep.
_OPENERS_ONLY = bytes.maketrans(b"[", b"{")
_NOT_OPENER = bytes(b for b in range(256) if b not in b"{[\n")
_TOO_MANY_OPENERS = b"{" * (MAX_DEPTH + 1)
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"{[]}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class DuplicateKeyError(ValueError):
    """An object names the same key twice."""


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object's dict, refusing repeated keys: pyarrow's parser refuses them (``Column(/a)
    was specified twice``) and ``json.loads`` would keep the last value, silently dropping the
    others; a row that says two things about one field is rejected instead."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        repeated = next(k for k, n in Counter(key for key, _ in pairs).items() if n > 1)
        raise DuplicateKeyError(f"the key {repeated!r} appears more than once in an object")
    return obj


_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)
_JSON_WHITESPACE = _WHITESPACE.decode()
# In pyarrow's refusals when a column's values differ in kind (within a part; between parts).
_MIXED_KINDS = ("changed from", "incompatible types")
_SMALLEST_HALF = 64  # lines; a failing part this small is decoded line by line


@dataclass
class Decoded:
    """A decoded batch: its rows, each row's line number, and the lines rejected."""

    table: pa.Table
    offsets: pa.Array | list[int]
    rejects: list[Reject]


def decode_lines(lines: Sequence[bytes], first_line: int, source: str) -> Decoded:
    """Decode ``lines`` (raw, newline-terminated, numbered from ``first_line``)."""
    table = _parse_clean(lines)
    if isinstance(table, pa.Table):
        return Decoded(table, consecutive(first_line, len(lines)), [])
    numbered = [(first_line + i, line) for i, line in enumerate(lines) if line.strip(_WHITESPACE)]
    return _decode_by_bisection(numbered, source)


def _decode_by_bisection(numbered: list[tuple[int, bytes]], source: str) -> Decoded:
    """Keep halving the batch until pyarrow takes each part; decode small failing parts by line.

    A few bad lines thus cost a few extra bulk parses of ever smaller parts instead of a
    ``json.loads`` per line. A batch whose columns mix kinds is decoded line by line at once:
    halving would not help, the objects are needed to turn the mixed columns into text.
    """
    parts: list[Decoded] = []
    pending = [numbered]
    while pending:
        part = pending.pop()
        table = _parse_clean([line for _, line in part])
        if isinstance(table, pa.Table):
            parts.append(Decoded(table, [number for number, _ in part], []))
        elif any(marker in table for marker in _MIXED_KINDS):
            return _decode_each(numbered, source)
        elif len(part) > _SMALLEST_HALF:
            middle = len(part) // 2
            pending += [part[middle:], part[:middle]]  # the first half is decoded first
        else:
            parts.append(_decode_each(part, source))
    table = _joined([part.table for part in parts])
    if not isinstance(table, pa.Table):  # the parts' types do not join: decode all as one
        return _decode_each(numbered, source)
    offsets = [offset for part in parts for offset in part.offsets]
    return Decoded(table, offsets, [reject for part in parts for reject in part.rejects])


def _parse_clean(lines: Sequence[bytes]) -> pa.Table | str:
    """The lines parsed in bulk by pyarrow, or why not: each line must be exactly one object.

    When every line starts with "{" and ends with "}", no object can span lines (the line
    break would sit between "}" and "{", which is invalid inside an object), so each line holds
    at least one object and ``num_rows == len(lines)`` proves it holds exactly one. Top-level
    nulls and blank lines fail the screen, so pyarrow never sees them.
    """
    if not (
        lines
        and {*map(_FIRST_BYTE, lines)} == _OPENING_BRACE
        and _end_objects(lines[:-1])
        and lines[-1].rstrip(b"\r\n").endswith(b"}")
    ):
        return "a line is not a lone object"
    parts = _parts(lines)
    if not all(map(is_utf8, parts)):  # pyarrow would put the invalid bytes into string columns
        return "invalid UTF-8"
    if (
        max(map(len, lines)) > _SHORT_LINE_BYTES
        and any(_TOO_MANY_OPENERS in part.translate(_OPENERS_ONLY, _NOT_OPENER) for part in parts)
        and any(map(_too_deep, lines))
    ):
        return "nested too deep"
    table = _parse_bulk(parts)
    if isinstance(table, pa.Table):
        if table.num_rows != len(lines):
            return "a line holds several values"
        if 1 + max(map(_type_depth, table.schema.types), default=0) > MAX_DEPTH:
            return "nested too deep"
    return table


def _end_objects(lines: Sequence[bytes]) -> bool:
    """True if every line ends with "}" and its line break (checked for LF first: cheapest)."""
    return {*map(_SECOND_LAST_BYTE, lines)} <= _CLOSING_BRACE or all(
        map(bytes.endswith, lines, repeat(_OBJECT_LINE_ENDS))
    )


def _type_depth(kind: pa.DataType) -> int:
    """How many struct/list levels ``kind`` nests: a JSON value's depth, once parsed."""
    if not pa.types.is_nested(kind):
        return 0
    return 1 + max((_type_depth(kind.field(i).type) for i in range(kind.num_fields)), default=0)


def _parts(lines: Sequence[bytes]) -> list[bytes]:
    """``lines`` joined into up to ``_PARTS`` parts of whole lines, for parallel parsing."""
    count = max(1, min(_PARTS, sum(map(len, lines)) // _MIN_PART_BYTES, len(lines)))
    size = -(-len(lines) // count)
    return [b"".join(lines[start : start + size]) for start in range(0, len(lines), size)]


def _parse_bulk(parts: Sequence[bytes]) -> pa.Table | str:
    """The parts parsed by pyarrow, one single-block call each, in parallel; or why not.

    pyarrow 25's JSON reader segfaults when one read gets several blocks and a column's values
    differ in kind between them (a number in one block, an array in the next). So every call
    reads its part as a single block, and the parts run on a thread pool instead (pyarrow
    releases the GIL); their tables are joined here, promoting types as pyarrow would.
    """
    tables = (
        list(_parser_pool().map(_parse_block, parts))
        if len(parts) > 1
        else [_parse_block(parts[0])]
    )
    refusals = [table for table in tables if isinstance(table, str)]
    return refusals[0] if refusals else _joined(tables)


def _joined(tables: list[pa.Table]) -> pa.Table | str:
    """The tables as one, types promoted where they differ (null to string, int to double,
    struct fields merged); or why they do not join."""
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
        if not all(t.schema.equals(table.schema) for t in tables):
            table.validate(full=True)  # pyarrow 25 can build invalid arrays while promoting
    except pa.ArrowException as exc:
        return str(exc)
    if table.num_rows != sum(t.num_rows for t in tables):  # parts of "{}" rows, no columns
        return "rows without columns"
    return table


def _parse_block(chunk: bytes) -> pa.Table | str:
    """``chunk`` read by pyarrow as one block, and checked: pyarrow 25 builds invalid arrays
    for some input (a list whose first item is null, then values: ``[null, 1]``)."""
    options = pajson.ReadOptions(use_threads=False, block_size=len(chunk) + 1)
    try:
        table = pajson.read_json(pa.BufferReader(chunk), read_options=options)
        table.validate(full=True)
    except (pa.ArrowException, ValueError) as exc:  # ValueError: the message was not UTF-8
        return str(exc)
    return table


@cache
def _parser_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=_PARTS, thread_name_prefix="beamwright-json")


def _too_deep(line: bytes) -> bool:
    """True if ``line`` nests more than MAX_DEPTH levels, without parsing it.

    Counting openers is a free upper bound; only lines over it are scanned with strings removed
    (brackets inside strings are not structure).
    """
    if line.count(b"{") + line.count(b"[") <= MAX_DEPTH:
        return False
    depth = 0
    for byte in _STRING.sub(b"", line).translate(None, _NOT_BRACKET):
        depth += 1 if byte in b"{[" else -1
        if depth > MAX_DEPTH:
            return True
    return False


def _decode_each(numbered: Sequence[tuple[int, bytes]], source: str) -> Decoded:
    """Decode line by line, rejecting the bad lines, then build the table from the good ones."""
    good_lines: list[bytes] = []
    objects: list[dict] = []
    offsets: list[int] = []
    rejects: list[Reject] = []
    for number, line in numbered:
        decoded = _decode_line(line)
        if isinstance(decoded, dict):
            good_lines.append(line)
            objects.append(decoded)
            offsets.append(number)
        else:
            rule, error = decoded
            rejects.append(Reject(source, number, _strip_line_break(line), error, rule))
    table = None
    if good_lines:
        # Every good line is now known to be one shallow object, so pyarrow may parse them.
        table = _parse_bulk(_parts(good_lines))
    if not isinstance(table, pa.Table) or table.num_rows != len(objects):
        table = _table_from_objects(objects)
    return Decoded(table, offsets, rejects)


def _decode_line(line: bytes) -> dict | tuple[str, str]:
    """The line's object, or ``(rule, error)`` saying why it is not one."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "encoding", f"invalid UTF-8 at byte {exc.start + 1}: {exc.reason}"
    if _too_deep(line):
        return "parse", f"nesting deeper than {MAX_DEPTH} levels"
    try:
        value = _json_value(text)
    except json.JSONDecodeError as exc:
        return "parse", f"invalid JSON at column {exc.colno}: {exc.msg}"
    except DuplicateKeyError as exc:
        return "parse", str(exc)
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return "parse", f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return "parse", f"expected a JSON object, got {_json_kind(value)}"
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        return "encoding", "a \\u escape encodes a lone UTF-16 surrogate, which is not text"
    return value


def _json_value(text: str) -> object:
    """``json.loads(text)`` refusing duplicate keys, minus most of its overhead in the common
    case (a third faster)."""
    try:
        value, end = _JSON.raw_decode(text)
    except json.JSONDecodeError:
        return _JSON.decode(text)  # leading whitespace, or raise the error json.loads reports
    if text[end:].strip(_JSON_WHITESPACE):
        return _JSON.decode(text)  # raises "Extra data" at its column
    return value


def _has_lone_surrogate(value: dict) -> bool:
    """True if a string in ``value`` holds a surrogate code point (escaped pairs are joined)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _strip_line_break(line: bytes) -> bytes:
    """``line`` without its ``\\n`` or ``\\r\\n``: the raw record a reject carries."""
    if line.endswith(b"\n"):
        line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
    return line


def _table_from_objects(objects: Sequence[dict]) -> pa.Table:
    """A table from decoded objects; a column whose values mix kinds becomes JSON text.

    Keys missing from an object are nulls. Text keeps every value (``12.5`` becomes
    ``"12.5"``, nested values their JSON) so that the validation step can coerce what fits and
    reject the rest row by row.
    """
    names = list(dict.fromkeys(key for obj in objects for key in obj))
    if not names:  # only "{}" objects: rows without columns
        return pa.table([pa.nulls(len(objects))], names=["_"]).drop_columns(["_"])
    return pa.table({name: _column([obj.get(name) for obj in objects]) for name in names})


def _column(values: list) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowException, OverflowError):
        return pa.array([value_text(value) for value in values], pa.string())
