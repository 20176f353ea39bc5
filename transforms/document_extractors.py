"""Business fields out of a document's text, per document type, each with a confidence.

Plain Python over the text lines (no Beam, no Arrow): :func:`classify` says which type a text
is (keyword evidence, confidence = the winner's share of it); :data:`EXTRACTORS` map a type to
the function reading its fields. A field found under an explicit label (``Invoice Number:``)
scores 0.95; one inferred from layout (the first line naming a company) scores 0.6-0.7; the
caller scales both by OCR confidence when the text was OCR'd. A field not found is absent,
never guessed.

Dates are read as ISO (``2026-01-15``), day-first numeric (``15/01/2026``: the European
convention the sample vendors use; a US month-first date would be misread) and written months
(``15 January 2026``, ``January 15, 2026``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

Found = dict[str, tuple[Any, float]]
"""field -> (value, confidence 0-1)."""

LABELLED = 0.95
INFERRED = 0.7

KEYWORDS = {
    "invoice": ("invoice", "bill to", "vat", "due date", "payment due", "subtotal", "iban"),
    "receipt": ("receipt", "thank you", "paid by", "cashier", "change"),
    "contract": ("agreement", "governed by", "effective date", "termination", "hereinafter",
                 "between", "parties"),
}
MONTHS = {m: n for n, m in enumerate(
    ["january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"], start=1)}
SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP"}
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "NOK", "SEK", "DKK", "JPY", "CAD", "AUD")
COMPANY = re.compile(r"\b(GmbH|Ltd|Limited|Inc|LLC|AS|AG|SA|plc|Corp|Co)\.?$")
_AMOUNT = re.compile(r"(?P<sym>[$€£])?\s*(?P<num>-?\d{1,3}(?:,\d{3})*(?:\.\d{2})|-?\d+(?:\.\d{2}))")


def classify(text: str) -> tuple[str | None, float]:
    """The document type of ``text`` and the share of the keyword evidence it won."""
    lower = text.lower()
    scores = {kind: sum(lower.count(word) for word in words) for kind, words in KEYWORDS.items()}
    total = sum(scores.values())
    if total == 0:
        return None, 0.0
    kind = max(scores, key=lambda k: scores[k])
    return kind, round(scores[kind] / total, 3)


def parse_date(text: str) -> dt.date | None:
    """The first date in ``text`` (formats in the module docstring), or None."""
    text = text.strip()
    for pattern, order in (
        (r"(\d{4})-(\d{1,2})-(\d{1,2})", "ymd"),
        (r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})", "dmy"),
        (r"(\d{1,2})\s+([A-Za-z]+)\s+(\d{4})", "dMy"),
        (r"([A-Za-z]+)\s+(\d{1,2}),?\s+(\d{4})", "Mdy"),
    ):
        m = re.search(pattern, text)
        if not m:
            continue
        a, b, c = m.groups()
        try:
            if order == "ymd":
                return dt.date(int(a), int(b), int(c))
            if order == "dmy":
                return dt.date(int(c), int(b), int(a))
            if order == "dMy" and b.lower() in MONTHS:
                return dt.date(int(c), MONTHS[b.lower()], int(a))
            if order == "Mdy" and a.lower() in MONTHS:
                return dt.date(int(c), MONTHS[a.lower()], int(b))
        except ValueError:
            continue
    return None


def parse_amount(text: str) -> tuple[float | None, str | None]:
    """The last money amount in ``text`` and the currency written beside it (code or symbol)."""
    matches = list(_AMOUNT.finditer(text))
    if not matches:
        return None, None
    m = matches[-1]
    currency = SYMBOLS.get(m.group("sym") or "")
    if currency is None:
        code = re.search(r"\b(" + "|".join(CURRENCIES) + r")\b", text)
        currency = code.group(1) if code else None
    return float(m.group("num").replace(",", "")), currency


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _labelled(lines: list[str], labels: str) -> str | None:
    """The value after the first line starting with one of ``labels`` (a regex alternation)
    and a colon; a label is never a prefix of a longer word, and lines must start with it, so
    ``Total`` never matches ``Subtotal``."""
    pattern = re.compile(rf"^(?:{labels})(?![A-Za-z])[^:\n]{{0,20}}:\s*(.+)$", re.I)
    for line in lines:
        m = pattern.match(line)
        if m:
            return m.group(1).strip()
    return None


def _put(found: Found, name: str, value: Any, confidence: float) -> None:
    if value is not None and value != "" and name not in found:
        found[name] = (value, confidence)


def _date_field(found: Found, lines: list[str], name: str, labels: str) -> None:
    value = _labelled(lines, labels)
    _put(found, name, parse_date(value) if value else None, LABELLED)


def invoice_fields(text: str) -> Found:
    lines = _lines(text)
    found: Found = {}
    vendor = _labelled(lines, "From|Vendor|Supplier|Seller")
    _put(found, "vendor", vendor, LABELLED)
    if vendor is None:  # layout: the first company name that is not the customer's
        for line in lines[:6]:
            if COMPANY.search(line) and not re.match(r"^(bill|ship|sold)\s+to\b", line, re.I):
                _put(found, "vendor", line, INFERRED)
                break
    number = _labelled(lines, r"Invoice\s*(?:Number|No\.?|#)|No\.|Number")
    if number:
        token = re.match(r"[A-Z0-9][A-Z0-9\-/]*", number.split()[0], re.I)
        _put(found, "invoice_number", token.group(0) if token else None, LABELLED)
    _date_field(found, lines, "invoice_date", r"Invoice\s+Date|Date\s+of\s+issue|Issued|Issue\s+date|Date")
    _date_field(found, lines, "due_date", r"Due\s+Date|Payment\s+due|Due")
    currencies: list[str] = []
    for name, labels in (
        ("net_amount", r"Subtotal|Net\s+amount|Net\s+total|Net"),
        ("tax_amount", r"VAT|Tax|Sales\s+tax|GST"),
        ("total_amount", r"Total\s+due|Amount\s+due|Grand\s+total|Total"),
    ):
        value = _labelled(lines, labels)
        if value:
            amount, currency = parse_amount(value)
            _put(found, name, amount, LABELLED)
            if currency:
                currencies.append(currency)
    stated = _labelled(lines, "Currency")
    if stated and stated.split()[0].upper() in CURRENCIES:
        _put(found, "currency", stated.split()[0].upper(), LABELLED)
    elif currencies:
        _put(found, "currency", max(set(currencies), key=currencies.count), INFERRED)
    items = []
    for line in lines:
        m = re.match(
            r"^(\d+)\s*[x×]\s*(.+?)\s*@\s*([\d,]+\.\d{2})\s*=\s*([\d,]+\.\d{2})$", line, re.I
        )
        if m:
            items.append({
                "description": m.group(2), "quantity": int(m.group(1)),
                "unit_price": float(m.group(3).replace(",", "")),
                "amount": float(m.group(4).replace(",", "")),
            })
    _put(found, "line_items", items or None, LABELLED)
    return found


def receipt_fields(text: str) -> Found:
    lines = _lines(text)
    found: Found = {}
    merchant = _labelled(lines, "Merchant|Store|Shop")
    _put(found, "merchant", merchant, LABELLED)
    if merchant is None:  # layout: the shop's name heads the slip
        for line in lines[:3]:
            if not re.search(r"receipt|date|\d{2}", line, re.I):
                _put(found, "merchant", line, INFERRED)
                break
    _date_field(found, lines, "date", r"Date|Datum")
    total = _labelled(lines, r"Total|Amount\s+paid|Grand\s+total")
    if total:
        _put(found, "total_amount", parse_amount(total)[0], LABELLED)
    return found


def contract_fields(text: str) -> Found:
    lines = _lines(text)
    flat = " ".join(lines)
    found: Found = {}
    m = re.search(r"\bbetween\s+(.+?)\s+and\s+(.+?)(?:\s*\(|[.;,]\s|\.$)", flat, re.I)
    if m:
        _put(found, "parties", [m.group(1).strip(), m.group(2).strip()], LABELLED)
    _date_field(found, lines, "effective_date", r"Effective\s+Date|Commencement\s+Date|Start\s+Date")
    _date_field(found, lines, "termination_date", r"Termination\s+Date|Expiry\s+Date|End\s+Date")
    if "effective_date" not in found:
        m = re.search(r"effective\s+(?:as\s+of|from|on)\s+([^.;]+)", flat, re.I)
        _put(found, "effective_date", parse_date(m.group(1)) if m else None, INFERRED)
    m = re.search(r"governed\s+by\s+(?:and\s+construed\s+in\s+accordance\s+with\s+)?the\s+laws?\s+of\s+(.+?)\.(?:\s|$)", flat, re.I)
    if m:
        _put(found, "governing_law", m.group(1).strip(), LABELLED)
    return found


EXTRACTORS: dict[str, Callable[[str], Found]] = {
    "invoice": invoice_fields,
    "receipt": receipt_fields,
    "contract": contract_fields,
}

FIELDS: dict[str, tuple[str, ...]] = {
    "invoice": ("vendor", "invoice_number", "invoice_date", "due_date", "currency", "net_amount",
                "tax_amount", "total_amount", "line_items"),
    "receipt": ("merchant", "date", "total_amount"),
    "contract": ("parties", "effective_date", "termination_date", "governing_law"),
}
"""The fields each type's extractor looks for (the columns of its structured table)."""
