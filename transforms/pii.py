"""Personal data found in free text (a document's body), and the text with it masked.

Column masking (:mod:`transforms.masking`) protects a column whose every value is personal;
a document mixes personal data into prose, so here each finding is a span of the text. A
pattern alone over-matches (any 16 digits look like a card), so numbers are confirmed by
their check digits where they have them: IBANs by ISO 7064 mod-97, card numbers by Luhn.
National ids have no checksum we can verify and are matched by pattern only: US SSNs (not
area 000, 666 or 9xx, group 00, serial 0000) and UK National Insurance numbers. Phone
numbers are taken only when written as such, with a ``+country`` prefix or an area code in
parentheses: bare digit groups are as likely account, order or card-like numbers.

A masked span becomes ``[EMAIL]``, ``[PHONE]``, ``[IBAN]``, ``[NATIONAL_ID]`` or, for a card,
``[CARD ****1111]`` (the last four digits, as receipts print them).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("email", "iban", "card", "national_id", "phone")
"""What is detected, in the order spans are claimed (a card's digits are not also a phone)."""


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int
    value: str


def iban_valid(value: str) -> bool:
    """ISO 13616 check: move the first four characters to the end, letters to numbers, mod 97 == 1."""
    s = re.sub(r"\s", "", value).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{11,30}", s):
        return False
    digits = "".join(str(int(c, 36)) for c in s[4:] + s[:4])
    return int(digits) % 97 == 1


def luhn_valid(value: str) -> bool:
    """The Luhn check of a 13-19 digit card number (spaces and dashes ignored)."""
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for n, d in enumerate(reversed(digits)):
        if n % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ssn_valid(value: str) -> bool:
    area, group, serial = value.split("-")
    return area not in ("000", "666") and not area.startswith("9") and group != "00" and serial != "0000"


PATTERNS: dict[str, tuple[re.Pattern[str], Callable[[str], bool]]] = {
    "email": (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), lambda v: True),
    "iban": (re.compile(r"\b[A-Z]{2}\d{2}(?:\s?[A-Z0-9]){11,30}\b"), iban_valid),
    "card": (re.compile(r"\b\d(?:[ -]?\d){12,18}\b"), luhn_valid),
    "national_id": (
        re.compile(r"\b\d{3}-\d{2}-\d{4}\b|\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b"),
        lambda v: _ssn_valid(v) if "-" in v else True,
    ),
    "phone": (re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?(?:\(\d{1,4}\)\s?)?|\(\d{2,4}\)\s?)\d{2,4}(?:[\s.-]\d{2,8}){1,4}(?!\w)"),
              lambda v: sum(c.isdigit() for c in v) >= 9),
}


def find_pii(text: str) -> list[Finding]:
    """Non-overlapping findings in ``text``, in text order (earlier kinds claim spans first)."""
    taken: list[Finding] = []
    for kind in KINDS:
        pattern, valid = PATTERNS[kind]
        for m in pattern.finditer(text):
            if any(m.start() < f.end and f.start < m.end() for f in taken):
                continue
            if valid(m.group(0)):
                taken.append(Finding(kind, m.start(), m.end(), m.group(0)))
    return sorted(taken, key=lambda f: f.start)


def _token(finding: Finding) -> str:
    if finding.kind == "card":
        return f"[CARD ****{''.join(c for c in finding.value if c.isdigit())[-4:]}]"
    return f"[{finding.kind.upper()}]"


def mask_pii(text: str, findings: list[Finding] | None = None) -> str:
    """``text`` with every finding replaced by its token."""
    out, last = [], 0
    for f in findings if findings is not None else find_pii(text):
        out += [text[last:f.start], _token(f)]
        last = f.end
    out.append(text[last:])
    return "".join(out)
