"""The first record of a CSV file, parsed before pyarrow reads the rest.

pyarrow needs the column names up front to read every column as a string (its column types
are given by name), and, without a header, the number of columns. So the first record is read
here, parsed the way pyarrow parses records, and what was read past it is handed on.
"""

from __future__ import annotations

from typing import BinaryIO

from connectors.files.base import CorruptFileError
from connectors.files.csvinput import LINE_BREAKS

_BOM = b"\xef\xbb\xbf"
_PEEK_BYTES = 1 << 16


def first_record(
    raw: BinaryIO, delimiter: str, quote_char: str, path: str
) -> tuple[list[str], bytes, bytes] | None:
    """The first record's fields, its bytes (BOM removed) and the bytes read after it.

    None for a file without any data. A first record that cannot give column names (not
    UTF-8, empty, or with a quote that is never closed) makes the file unreadable.
    """
    data = raw.read(_PEEK_BYTES).removeprefix(_BOM)
    if not data:
        return None
    while (split := _split_first_record(data, delimiter, quote_char, at_end=False)) is None:
        more = raw.read(_PEEK_BYTES)
        if not more:
            split = _split_first_record(data, delimiter, quote_char, at_end=True)
            break
        data += more
    if split is None:
        raise CorruptFileError(path, "the first record has a quoted field that is never closed")
    fields, end = split
    try:
        names = [field.decode("utf-8") for field in fields]
    except UnicodeDecodeError as exc:
        raise CorruptFileError(path, f"the first line is not valid UTF-8: {exc}") from exc
    if data[:end] in LINE_BREAKS:
        raise CorruptFileError(path, "the first line is empty, so the columns are unknown")
    return names, data[:end], data[end:]


def record_length(data: bytes, delimiter: str, quote_char: str, *, at_end: bool) -> int | None:
    """How many bytes of ``data`` the record it starts with takes, its line break included.

    Parsed exactly as the reader parses records, so a quoted value holding line breaks keeps
    its record whole (``connectors.originals`` re-reads rejected records this way). None while
    the record may continue past ``data``; with ``at_end`` (``data`` runs to the end of the
    file), None only if a quote is never closed.
    """
    split = _split_first_record(data, delimiter, quote_char, at_end)
    return None if split is None else split[1]


def _split_first_record(
    data: bytes, delimiter: str, quote_char: str, at_end: bool
) -> tuple[list[bytes], int] | None:
    """The fields of the first record in ``data`` and the offset just past its line break.

    Parses as pyarrow does: a quote is special only at the start of a field and doubled inside
    a quoted field; the record ends at the first line break outside quotes, or at the end of
    the file (``at_end``). None while the record may continue in data not read yet, or, at the
    end, if it ends inside a quoted field.
    """
    separator, quote = ord(delimiter), ord(quote_char)
    fields: list[bytes] = []
    field = bytearray()
    quoted, at_field_start, index = False, True, 0
    while index < len(data):
        byte = data[index]
        index += 1
        at_last_byte = index == len(data)
        if quoted:
            if byte != quote:
                field.append(byte)
            elif not at_last_byte and data[index] == quote:
                field.append(quote)
                index += 1
            elif at_last_byte and not at_end:
                return None  # the next byte tells whether this quote is doubled
            else:
                quoted = False
        elif byte == quote and at_field_start:
            quoted = True
        elif byte == separator:
            fields.append(bytes(field))
            field.clear()
            at_field_start = True
            continue
        elif byte in b"\r\n":
            if byte == ord("\r") and at_last_byte and not at_end:
                return None  # a "\n" may follow
            if byte == ord("\r") and not at_last_byte and data[index] == ord("\n"):
                index += 1
            fields.append(bytes(field))
            return fields, index
        else:
            field.append(byte)
        at_field_start = False
    if not at_end or quoted:
        return None
    fields.append(bytes(field))
    return fields, index
