"""Python ``re`` patterns rewritten for RE2 (Arrow's regex engine) with the same matches.

Great Expectations' pandas engine tests ``Series.str.contains(regex)``: ``re.search``, which
pandas 3 (pyarrow-backed strings) runs in RE2 when it judges RE2 to agree with ``re`` and in
``re`` otherwise. Arrow's ``match_substring_regex`` searches with RE2. The two agree on most
syntax but not on everything users write, so a pattern is rewritten token by token to
Python's meaning, and anything whose meaning differs and cannot be rewritten exactly makes
:func:`to_re2` return ``None`` (the expectation then keeps running through GX):

* ``\\d``, ``\\s``, ``\\w`` are Unicode-aware in Python and ASCII in RE2: they become
  explicit classes of the code points this Python's ``re`` matches with them. Their
  negations are kept only outside ``[...]``.
* ``$`` also matches before a final newline in Python: it becomes ``(?:\\n?\\z)`` when nothing
  but ``)`` or ``|`` follows it (the match is only tested for existence, so consuming the
  newline changes nothing).
* ``{,n}`` means ``{0,n}`` in Python and is literal text in RE2, and pandas 3 sends it to
  RE2: GX's answer depends on the pandas version, so it is not compiled. ``[`` inside a class
  is a literal in Python and may open a POSIX class in RE2; ``\\uXXXX`` is Python-only.
* Lookarounds, backreferences, inline flags, ``\\b``, ``\\A``, ``\\Z``, conditionals and
  anything RE2 refuses to compile are not rewritten.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings

_SIMPLE_ESCAPES = frozenset("ntrfva")
_UNSUPPORTED_ESCAPES = frozenset("bBAZgN0123456789")
_CLASSES = frozenset("dsw")  # Unicode-aware in Python, ASCII in RE2


class _Unsupported(Exception):
    """The pattern uses something whose Python meaning RE2 cannot reproduce exactly."""


@functools.cache
def _ranges(kind: str) -> str:
    """The characters Python's ``\\<kind>`` matches, as RE2 class ranges (no brackets): found by
    Python's ``re`` itself over every code point, so the class is exactly what ``re`` means."""
    every = "".join(map(chr, range(sys.maxunicode + 1)))
    parts = []
    for run in re.finditer(f"\\{kind}+", every):
        start, end = run.start(), run.end() - 1
        parts.append(f"\\x{{{start:x}}}" if start == end else f"\\x{{{start:x}}}-\\x{{{end:x}}}")
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def to_re2(pattern: str) -> str | None:
    """An RE2 pattern that ``search``es exactly like Python's ``re.search(pattern)``, or None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "possible nested set"
            re.compile(pattern)
    except (re.error, RecursionError):
        return None  # GX reports the error; nothing to compile
    try:
        return _Rewriter(pattern).run()
    except _Unsupported:
        return None


class _Rewriter:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.out: list[str] = []

    def run(self) -> str:
        while self.i < len(self.p):
            c = self.p[self.i]
            if c == "\\":
                self.out.append(self._escape(in_class=False))
            elif c == "[":
                self._class()
            elif c == "(":
                self._group()
            elif c == "$":
                rest = self.p[self.i + 1 :]
                if rest and rest[0] not in ")|":
                    raise _Unsupported("$ followed by more pattern")
                self.out.append("(?:\\n?\\z)")
                self.i += 1
            elif c == "{":
                self._brace()
            else:
                self.out.append(c)
                self.i += 1
        return "".join(self.out)

    def _escape(self, *, in_class: bool) -> str:
        if self.i + 1 >= len(self.p):
            raise _Unsupported("trailing backslash")
        c = self.p[self.i + 1]
        self.i += 2
        if c in _CLASSES:
            ranges = _ranges(c)
            return ranges if in_class else f"[{ranges}]"
        if c in "DSW":
            if in_class:
                raise _Unsupported("negated class escape inside a class")
            return f"[^{_ranges(c.lower())}]"
        if c in _UNSUPPORTED_ESCAPES:
            raise _Unsupported(f"\\{c}")
        if c in _SIMPLE_ESCAPES:
            return "\\" + c
        if c in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[c]
            digits = self.p[self.i : self.i + width]
            self.i += width
            return f"\\x{{{int(digits, 16):x}}}"
        if c.isalnum():
            raise _Unsupported(f"\\{c}")
        return "\\" + c  # an escaped punctuation character is literal in both

    def _class(self) -> None:
        self.i += 1
        parts = ["["]
        if self.p[self.i : self.i + 1] == "^":
            parts.append("^")
            self.i += 1
        first = True
        while True:
            if self.i >= len(self.p):
                raise _Unsupported("unterminated class")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            if c == "\\":
                parts.append(self._escape(in_class=True))
            elif c in "[]":
                parts.append("\\" + c)
                self.i += 1
            else:
                parts.append(c)
                self.i += 1
            first = False
        parts.append("]")
        self.out.append("".join(parts))

    def _group(self) -> None:
        if self.p.startswith("(?:", self.i):
            self.out.append("(?:")
            self.i += 3
        elif self.p.startswith("(?P<", self.i):
            self.out.append("(?P<")
            self.i += 4
        elif self.p.startswith("(?", self.i):
            raise _Unsupported("lookaround, flags or other (? construct")
        else:
            self.out.append("(")
            self.i += 1

    def _brace(self) -> None:
        match = re.match(r"\{(\d*)(,?)(\d*)\}", self.p[self.i :])
        if match is None or not (match.group(1) or match.group(3)):
            self.out.append("\\{")  # Python reads a brace that is no repeat as a literal
            self.i += 1
            return
        low, comma, high = match.groups()
        if not low:
            raise _Unsupported("{,n}: literal for pandas 3 (RE2), a repeat for re")
        self.out.append("{" + low + comma + high + "}")
        self.i += match.end()
