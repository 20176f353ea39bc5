"""Row rules for the validate step, each a vectorised check over a whole Arrow table.

A rule returns a boolean mask of the rows that fail it; the reason text is built only for
those rows. Null handling follows SQL and Great Expectations: only ``NotNull`` fails a null,
every other rule lets nulls through (combine with ``NotNull`` to require a value), except
``Expression``, where a null result counts as a failure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from transforms.expressions import parse


def _column(table: pa.Table, field: str) -> pa.ChunkedArray:
    """A column by name, or a nested struct field by dotted path."""
    if field in table.column_names:
        return table.column(field)
    head, _, rest = field.partition(".")
    if rest and head in table.column_names:
        return pc.struct_field(table.column(head), rest.split("."))
    return pa.chunked_array([pa.nulls(table.num_rows)])


def _fmt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Rule:
    """Base: ``id`` names the rule in dead letters and metrics; ``severity`` is error|warning."""

    id: str
    field: str | None = None
    severity: str = "error"

    def failures(self, table: pa.Table) -> pa.Array:
        raise TypeError(f"{type(self).__name__} does not define failures()")

    def reason(self, value: Any) -> str:
        return f"{self.field}: {_fmt(value)} fails {self.id}"

    def fields(self) -> frozenset[str]:
        return frozenset([self.field]) if self.field else frozenset()


def _fail(mask: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks()
    return pc.fill_null(mask, False)


@dataclass(frozen=True)
class NotNull(Rule):
    """Fails nulls; with ``nan_is_null`` a float NaN too (as pandas, and so GX, see it)."""

    nan_is_null: bool = False

    def failures(self, table: pa.Table) -> pa.Array:
        return _fail(pc.is_null(_column(table, self.field), nan_is_null=self.nan_is_null))

    def reason(self, value: Any) -> str:
        return f"{self.field}: is null or missing"


@dataclass(frozen=True)
class Between(Rule):
    """``min <= value <= max`` (``<`` when ``exclusive``); either bound may be omitted.

    NaN fails unless ``allow_nan``: every comparison with NaN is false, so without this check
    a NaN would pass any range, and a range rule exists to keep values that are not numbers
    in range out. ±Inf are ordered like any number: ``max`` rejects +Inf, ``min`` rejects
    -Inf, and a one-sided range accepts the infinity on its open side.

    ``exclusive_min`` / ``exclusive_max`` override ``exclusive`` for one bound (GX's
    ``strict_min`` / ``strict_max``). Bounds may be strings for a string column (compared by
    code point, as Python compares ``str``).
    """

    min: Any = None
    max: Any = None
    exclusive: bool = False
    allow_nan: bool = False
    exclusive_min: bool | None = None
    exclusive_max: bool | None = None

    def failures(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.field)
        strict_min = self.exclusive if self.exclusive_min is None else self.exclusive_min
        strict_max = self.exclusive if self.exclusive_max is None else self.exclusive_max
        bad = None
        if self.min is not None:
            below = (pc.less_equal if strict_min else pc.less)(col, self.min)
            bad = below
        if self.max is not None:
            above = (pc.greater_equal if strict_max else pc.greater)(col, self.max)
            bad = above if bad is None else pc.or_(bad, above)
        if not self.allow_nan and pa.types.is_floating(col.type):
            nan = pc.is_nan(col)
            bad = nan if bad is None else pc.or_(bad, nan)
        return _fail(bad)

    def reason(self, value: Any) -> str:
        if isinstance(value, float) and math.isnan(value):
            return f"{self.field}: NaN is not a number in range (allow_nan: true accepts it)"
        op = "<" if self.exclusive else "<="
        lo = f"{self.min} {op} " if self.min is not None else ""
        hi = f" {op} {self.max}" if self.max is not None else ""
        return f"{self.field}: {_fmt(value)} is outside {lo}value{hi}"


@dataclass(frozen=True)
class Regex(Rule):
    pattern: str = ""

    def failures(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.field)
        if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            col = pc.cast(col, pa.string())
        anchored = self.pattern
        if not anchored.startswith("^"):
            anchored = "^(?:" + anchored + ")"
        if not anchored.endswith("$"):
            anchored += "$"
        return _fail(pc.invert(pc.match_substring_regex(col, anchored)))

    def reason(self, value: Any) -> str:
        return f"{self.field}: {_fmt(value)} does not match /{self.pattern}/"


@dataclass(frozen=True)
class InSet(Rule):
    values: tuple[Any, ...] = ()

    def failures(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.field)
        try:
            allowed = pa.array(list(self.values), col.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            allowed = pa.array([str(v) for v in self.values])
            col = pc.cast(col, pa.string())
        return _fail(pc.and_(pc.invert(pc.is_in(col, value_set=allowed)), pc.is_valid(col)))

    def reason(self, value: Any) -> str:
        shown = ", ".join(_fmt(v) for v in self.values[:8])
        more = ", ..." if len(self.values) > 8 else ""
        return f"{self.field}: {_fmt(value)} is not one of [{shown}{more}]"


@dataclass(frozen=True)
class Length(Rule):
    min: int | None = None
    max: int | None = None

    def failures(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.field)
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            length = pc.list_value_length(col)
        else:
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                col = pc.cast(col, pa.string())
            length = pc.utf8_length(col)
        bad = None
        if self.min is not None:
            bad = pc.less(length, self.min)
        if self.max is not None:
            above = pc.greater(length, self.max)
            bad = above if bad is None else pc.or_(bad, above)
        return _fail(bad)

    def reason(self, value: Any) -> str:
        n = len(value) if value is not None else 0
        return f"{self.field}: length {n} is outside [{self.min}, {self.max}]"


@dataclass(frozen=True)
class Unique(Rule):
    """No duplicates within a batch; the first occurrence passes, later ones fail.

    With ``every_duplicate`` every row of a repeated value fails, the first included (GX's
    ``~column.duplicated(keep=False)``). Float ``-0.0`` and ``0.0`` are one value (Arrow's
    hash tells them apart by their bits; Python and pandas compare them equal).
    """

    every_duplicate: bool = False

    def failures(self, table: pa.Table) -> pa.Array:
        col = _column(table, self.field).combine_chunks()
        if len(col) == 0:
            return pa.array([], pa.bool_())
        if pa.types.is_floating(col.type):
            col = pc.add(col, pa.scalar(0.0, col.type))  # -0.0 + 0.0 is 0.0
        encoded = pc.dictionary_encode(col)
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        valid = codes >= 0
        if self.every_duplicate:
            counts = np.bincount(codes[valid], minlength=len(encoded.dictionary))
            dup = valid.copy()
            dup[valid] = counts[codes[valid]] > 1
            return pa.array(dup, pa.bool_())
        _, first = np.unique(codes, return_index=True)
        dup = valid.copy()
        dup[first] = False
        return pa.array(dup, pa.bool_())

    def reason(self, value: Any) -> str:
        return f"{self.field}: {_fmt(value)} is a duplicate within the batch"


@dataclass(frozen=True)
class Expression(Rule):
    """Passes where the safe expression is true; a false or null result fails."""

    expr: str = ""
    message: str | None = None

    def failures(self, table: pa.Table) -> pa.Array:
        return pc.invert(parse(self.expr).evaluate_predicate(table))

    def reason(self, value: Any) -> str:
        return self.message or f"expression failed: {self.expr}"

    def fields(self) -> frozenset[str]:
        return parse(self.expr).fields


def failing_values(table: pa.Table, rule: Rule, indices: Sequence[int]) -> list[Any]:
    """The values of ``rule.field`` at ``indices`` (for reason texts), or Nones."""
    if not rule.field:
        return [None] * len(indices)
    return _column(table, rule.field).take(pa.array(indices, pa.int64())).to_pylist()
