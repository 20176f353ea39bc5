"""Comparing a test case's expectations with what a run produced, as readable diff lines.

Plain Python over plain rows (dicts), so it is testable without Beam or Arrow. Values are
compared after :func:`canonical`: a date equals its ISO text (YAML reads ``2026-01-05`` as a
date, Arrow hands back ``datetime.date``), ``5`` equals ``5.0``, and floats are compared to 12
significant digits (a sum in another order differs in the last bits, not in meaning).

A field absent from an expected row means null, so recorded rows need not spell out nulls.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pipelines.spec_tests import ExpectedCounts, ExpectedDeadLetters, ExpectedRows

MAX_LINES_PER_CHECK = 20
"""Diff lines shown per sink or dead-letter group before the rest is summarised."""


def canonical(value: Any) -> Any:
    """A hashable, comparable form of a value from YAML, JSON or Arrow."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, decimal.Decimal):
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        rounded = float(f"{value:.12g}")
        return int(rounded) if rounded.is_integer() and abs(rounded) < 2**53 else rounded
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(canonical(v) for v in value)
    return str(value)


def plain(value: Any) -> Any:
    """A value as YAML/JSON can hold it (what ``--update`` records): dates as ISO text."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return canonical(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def _show(value: Any) -> str:
    return json.dumps(plain(value), default=str, ensure_ascii=False)


def _fields_of(
    expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]]
) -> list[str]:
    seen: dict[str, None] = {}
    for row in (*expected, *actual):
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def _key(row: Mapping[str, Any], fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(canonical(row.get(f)) for f in fields)


def _describe(row: Mapping[str, Any], fields: Sequence[str]) -> str:
    return (
        "{" + ", ".join(f"{f}: {_show(row.get(f))}" for f in fields if row.get(f) is not None) + "}"
    )


def _differences(
    expected: Mapping[str, Any], actual: Mapping[str, Any], fields: Sequence[str]
) -> list[str]:
    return [
        f"{f}: expected {_show(expected.get(f))}, got {_show(actual.get(f))}"
        for f in fields
        if canonical(expected.get(f)) != canonical(actual.get(f))
    ]


def compare_rows(
    expected: ExpectedRows, actual: Sequence[Mapping[str, Any]], what: str
) -> list[str]:
    """Diff lines for a sink's rows (empty: they match)."""
    if expected.rows is None:
        return [f"{what}: no expected rows recorded; run beamwright test --update to record them"]
    fields = expected.fields or _fields_of(expected.rows, actual)
    if expected.ordered:
        lines = _ordered(expected.rows, actual, fields, what)
    else:
        lines = _unordered(expected.rows, actual, fields, what)
    return _capped(lines, what)


def _ordered(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    what: str,
) -> list[str]:
    lines = []
    if len(expected) != len(actual):
        lines.append(f"{what}: expected {len(expected)} row(s), got {len(actual)}")
    for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
        for diff in _differences(want, got, fields):
            lines.append(f"{what}: row {i}: {diff}")
    for i in range(len(actual), len(expected)):
        lines.append(f"{what}: missing row {i}: {_describe(expected[i], fields)}")
    for i in range(len(expected), len(actual)):
        lines.append(f"{what}: unexpected row {i}: {_describe(actual[i], fields)}")
    return lines


def _unordered(
    expected: Sequence[Mapping[str, Any]],
    actual: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    what: str,
) -> list[str]:
    """Missing and unexpected rows as multisets; a missing row and an unexpected one that
    agree on most fields are shown as one row whose fields differ."""
    missing = Counter(_key(r, fields) for r in expected)
    missing.subtract(Counter(_key(r, fields) for r in actual))
    lost = _take(expected, fields, {k: n for k, n in missing.items() if n > 0})
    extra = _take(actual, fields, {k: -n for k, n in missing.items() if n < 0})
    lines = []
    if len(expected) != len(actual):
        lines.append(f"{what}: expected {len(expected)} row(s), got {len(actual)}")
    for want in lost:
        match = _closest(want, extra, fields)
        if match is None:
            lines.append(f"{what}: missing row {_describe(want, fields)}")
            continue
        got = extra.pop(match)
        same = [f for f in fields if canonical(want.get(f)) == canonical(got.get(f))]
        label = _describe(want, same[:3]) if same else "a row"
        lines.append(f"{what}: row {label} differs: " + "; ".join(_differences(want, got, fields)))
    for got in extra:
        lines.append(f"{what}: unexpected row {_describe(got, fields)}")
    return lines


def _take(
    rows: Sequence[Mapping[str, Any]], fields: Sequence[str], wanted: dict[tuple[Any, ...], int]
) -> list[Mapping[str, Any]]:
    out = []
    for row in rows:
        key = _key(row, fields)
        if wanted.get(key, 0) > 0:
            wanted[key] -= 1
            out.append(row)
    return out


def _closest(
    want: Mapping[str, Any], candidates: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> int | None:
    """The candidate sharing the most field values with ``want`` (at least half of them)."""
    best, best_score = None, 0
    for i, got in enumerate(candidates):
        score = sum(canonical(want.get(f)) == canonical(got.get(f)) for f in fields)
        if score > best_score:
            best, best_score = i, score
    return best if best_score * 2 >= len(fields) and best_score > 0 else None


def _capped(lines: list[str], what: str) -> list[str]:
    if len(lines) <= MAX_LINES_PER_CHECK:
        return lines
    rest = len(lines) - MAX_LINES_PER_CHECK
    return lines[:MAX_LINES_PER_CHECK] + [f"{what}: ... and {rest} more difference(s)"]


def compare_dead_letters(
    expected: Sequence[ExpectedDeadLetters], letters: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Diff lines for the dead letters (``{step, rule, payload}`` each): every expected
    (step, rule) with its count or rows, and no (step, rule) that nothing expected."""
    lines: list[str] = []
    covered: set[int] = set()
    for entry in expected:
        what = f"dead letters ({entry.step or 'any step'}, rule {entry.rule})"
        mine = [
            i
            for i, letter in enumerate(letters)
            if letter["rule"] == entry.rule and entry.step in (None, letter["step"])
        ]
        covered.update(mine)
        if entry.rows is not None:  # says how many too (a count given must match the rows)
            rows = ExpectedRows(rows=entry.rows, fields=_fields_of(entry.rows, []))
            lines += compare_rows(rows, [letters[i]["payload"] for i in mine], what)
        elif entry.count != len(mine):
            lines.append(f"{what}: expected {entry.count}, got {len(mine)}")
    others = Counter(
        (letter["step"], letter["rule"]) for i, letter in enumerate(letters) if i not in covered
    )
    for (step, rule), n in sorted(others.items()):
        lines.append(f"unexpected dead letters: {n} from {step}, rule {rule}")
    return lines


COUNT_FIELDS = ("rows_in", "rows_out", "rows_dead_lettered", "rows_filtered")


def compare_counts(expected: Mapping[str, ExpectedCounts], nodes: Mapping[str, Any]) -> list[str]:
    """Diff lines for the summary counts of the nodes a case names (NodeCounts-like)."""
    lines = []
    for name, want in expected.items():
        got = nodes.get(name)
        if got is None:
            lines.append(f"summary.{name}: the run reported no counts for it")
            continue
        for field in COUNT_FIELDS:
            value = getattr(want, field)
            if value is not None and value != getattr(got, field):
                lines.append(f"summary.{name}.{field}: expected {value}, got {getattr(got, field)}")
        if want.rules is not None:
            actual_rules = {k: v for k, v in got.rules.items() if v}
            for rule in sorted(set(want.rules) | set(actual_rules)):
                if want.rules.get(rule, 0) != actual_rules.get(rule, 0):
                    lines.append(
                        f"summary.{name}.rules.{rule}: expected {want.rules.get(rule, 0)}, "
                        f"got {actual_rules.get(rule, 0)}"
                    )
    return lines


def grouped_dead_letters(letters: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[{step, rule, count}]`` sorted, the recorded form of dead letters (``--update``)."""
    counts = Counter((letter["step"], letter["rule"]) for letter in letters)
    return [{"step": step, "rule": rule, "count": n} for (step, rule), n in sorted(counts.items())]
