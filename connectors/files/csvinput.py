"""The byte stream the CSV reader hands to pyarrow, prepared so that no record is lost.

pyarrow's CSV reader gives good rows no line numbers, fails the whole file on one invalid UTF-8
byte, and silently lets a quote that is never closed swallow the rest of the file into one
field. ``CsvInput`` sits between the file and pyarrow and, at C speed per block, records what the
reader needs to account for every record:

- ``bad_lines``: lines holding invalid UTF-8, with the decoder's reason. Their bad bytes are
  replaced by U+FFFD before pyarrow sees them (line structure unchanged), and the records
  covering those lines are rejected with their original bytes.
- ``empty_lines``: physically empty lines. pyarrow is told to keep empty lines as records (so
  its record numbers count every line-start), and the reader drops the records found here.
- ``sentinel_line``: after the real data it appends ``<quote>\\n`` on a line of its own. If the
  file ended inside a quoted field, that quote closes it and no record starts on
  ``sentinel_line``; otherwise the quote starts a sentinel record there, which the reader drops.
  So an unterminated quote is detected exactly, whatever the size of the record it swallowed.

Lines end as pyarrow ends records: at ``\\n``, ``\\r\\n`` or a bare ``\\r``.
"""

from __future__ import annotations

import io
import re
from typing import BinaryIO

from connectors.files.base import is_utf8

_READ_BYTES = 1 << 20
_NEWLINE_BEFORE_EMPTY_LINE = re.compile(rb"\n(?=\r?\n)")
_BARE_CR = re.compile(rb"\r(?!\n)")
LINE_BREAKS = (b"\r\n", b"\n", b"\r")  # longest first, to strip "\r\n" whole


def line_breaks(data: bytes) -> int:
    """How many lines ``data`` ends: ``\\r\\n``, ``\\n`` and bare ``\\r`` each count once."""
    return data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n")


class CsvInput(io.RawIOBase):
    """A readable stream over ``raw`` whose first line is line ``first_line``.

    ``prefix`` is data already read from ``raw`` (while peeking at the first record), to
    deliver first.
    """

    def __init__(
        self, raw: BinaryIO, first_line: int, quote_char: str, prefix: bytes = b""
    ) -> None:
        super().__init__()
        self._raw = raw
        self._next_line = first_line  # number of the line the next processed byte starts
        self._quote = quote_char.encode("ascii")
        self._carry = prefix  # a partial last line, held until its line break arrives
        self._ready = bytearray()  # processed bytes pyarrow has not read yet
        self._eof = False
        self.bad_lines: dict[int, str] = {}
        self.empty_lines: set[int] = set()
        self.sentinel_line: int | None = None

    def forget_lines_before(self, line: int) -> None:
        """Drop what is known about lines before ``line``: their records are all placed."""
        self.bad_lines = {n: reason for n, reason in self.bad_lines.items() if n >= line}
        self.empty_lines = {n for n in self.empty_lines if n >= line}

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        while not self._eof and len(self._ready) < len(buffer):
            self._fill()
        size = min(len(buffer), len(self._ready))
        buffer[:size] = self._ready[:size]
        del self._ready[:size]
        return size

    def _fill(self) -> None:
        data = self._carry + self._raw.read(_READ_BYTES)
        if len(data) == len(self._carry):
            self._finish(data)
            return
        # Cut after the last line break; a final "\r" waits, as a "\n" may follow it.
        cut = max(data.rfind(b"\n"), data.rfind(b"\r", 0, len(data) - 1)) + 1
        self._carry = data[cut:]
        if cut:
            self._process(data[:cut])

    def _finish(self, tail: bytes) -> None:
        """Queue the last bytes, then the sentinel on a line of its own."""
        self._eof = True
        self._carry = b""
        self._process(tail)
        at_line_start = not tail or tail.endswith(LINE_BREAKS)
        self.sentinel_line = self._next_line if at_line_start else self._next_line + 1
        self._ready += (b"" if at_line_start else b"\n") + self._quote + b"\n"

    def _process(self, piece: bytes) -> None:
        """Account for ``piece`` (whole lines, except at the end of the file) and queue it."""
        if _BARE_CR.search(piece) or not is_utf8(piece):
            piece = self._process_by_line(piece)
        else:  # the common case, at C speed: lines end at "\n", all text is valid
            self._note_empty_lines(piece)
            self._next_line += piece.count(b"\n")
        self._ready += piece

    def _process_by_line(self, piece: bytes) -> bytes:
        lines = piece.splitlines(keepends=True)  # splits where pyarrow does
        for index, line in enumerate(lines):
            number = self._next_line + index
            if line in LINE_BREAKS:
                self.empty_lines.add(number)
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad_lines[number] = f"invalid UTF-8 at byte {exc.start + 1}: {exc.reason}"
                lines[index] = line.decode("utf-8", "replace").encode("utf-8")
        self._next_line += line_breaks(piece)
        return b"".join(lines)

    def _note_empty_lines(self, piece: bytes) -> None:
        if piece.startswith((b"\n", b"\r\n")):
            self.empty_lines.add(self._next_line)
        line, position = self._next_line, 0
        for match in _NEWLINE_BEFORE_EMPTY_LINE.finditer(piece):
            line += piece.count(b"\n", position, match.end())
            position = match.end()
            self.empty_lines.add(line)
