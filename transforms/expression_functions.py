"""What the operators and built-in functions of the expression language compute.

``transforms.expressions`` owns the syntax (tokens, parser, AST, errors); this module owns the
semantics. Every operator and function is a plain module-level callable that takes evaluated
operands (each a ``pyarrow.Array``, ``ChunkedArray`` or ``Scalar``) and returns one, using only
``pyarrow.compute`` kernels on whole columns, never a per-row Python loop.

Nothing here knows the expression text. A rejected operand raises :class:`ArgumentError` with
the operand's index, and the evaluator turns that into an ``ExpressionError`` pointing at the
right column of the source. That separation also lets the parser check arity, literal-only
arguments and regular expressions from :data:`FUNCTIONS` before any data is seen.

Operators and functions share one coercion rule (:func:`align`), so ``d == '2024-01-01'``,
``d in ['2024-01-01']`` and ``coalesce(d, '2024-01-01')`` all read the text literal as a date when
``d`` is a date column; columns themselves are never silently re-typed.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc

Value = pa.Array | pa.ChunkedArray | pa.Scalar
"""What evaluating a (sub)expression yields: a column, or a scalar that broadcasts."""

_INT_TEXT = r"^[+-]?[0-9]+$"
_DATE_TEXT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_FLOAT_TEXT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ArgumentError(Exception):
    """An operator or function rejected an operand.

    ``index`` is the 0-based argument at fault, or None when the call as a whole is wrong; the
    evaluator maps it to a column in the expression text.
    """

    def __init__(self, message: str, index: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.index = index
        self.hint = hint


# ---------------------------------------------------------------------------------------------
# type helpers


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t)  # field references turn other text encodings into string


def is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


def is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_date(t) or pa.types.is_timestamp(t)


def parse_temporal(value: pa.Scalar, target: pa.DataType) -> pa.Scalar:
    """A text scalar parsed as a date/timestamp of type ``target``.

    ISO 8601 text without a zone offset is read as UTC when ``target`` has a time zone, so
    ``created_at >= '2024-01-01T00:00:00'`` works against a UTC column.
    """
    try:
        return value.cast(target)
    except pa.ArrowInvalid:
        if pa.types.is_timestamp(target) and target.tz is not None:
            try:
                return value.cast(pa.timestamp(target.unit)).cast(target)
            except pa.ArrowInvalid:
                pass
    raise ArgumentError(
        f"{value.as_py()!r} is not a valid {target}",
        hint="write dates as 'YYYY-MM-DD' and timestamps as 'YYYY-MM-DDTHH:MM:SS'",
    )


def coerce_to(value: Value, target: pa.DataType) -> Value:
    """Make ``value`` comparable with a column of type ``target`` where that is unambiguous.

    Only two coercions happen: a null-typed value takes ``target``, and a text *scalar* (a
    literal) against a date/timestamp is parsed. Columns are never silently re-typed.
    """
    if pa.types.is_null(value.type) and not pa.types.is_null(target):
        return value.cast(target)
    if isinstance(value, pa.Scalar) and is_text(value.type) and is_temporal(target):
        return parse_temporal(value, target)
    return value


def align(values: Sequence[Value]) -> list[Value]:
    """``values`` coerced towards the type of the first column among them (else first value)."""
    typed = [v for v in values if not pa.types.is_null(v.type)]
    columns = [v for v in typed if not isinstance(v, pa.Scalar)]
    if not typed:
        return list(values)
    target = (columns or typed)[0].type
    return [coerce_to(v, target) for v in values]


def _type_names(values: Sequence[Value], sep: str = ", ") -> str:
    return sep.join(str(v.type) for v in values)


def _text(args: Sequence[Value], i: int) -> Value:
    value = args[i]
    if pa.types.is_null(value.type):
        return value.cast(pa.string())
    if not is_text(value.type):
        raise ArgumentError(
            f"argument {i + 1} must be text, got {value.type}",
            i,
            hint="convert it with to_string()",
        )
    return value


def _number(args: Sequence[Value], i: int) -> Value:
    value = args[i]
    if pa.types.is_null(value.type):
        return value.cast(pa.float64())
    if not is_numeric(value.type):
        raise ArgumentError(
            f"argument {i + 1} must be a number, got {value.type}",
            i,
            hint="convert text with to_int() or to_float()",
        )
    return value


def _temporal(args: Sequence[Value], i: int) -> Value:
    value = args[i]
    if pa.types.is_null(value.type):
        return value.cast(pa.date32())
    if not is_temporal(value.type):
        raise ArgumentError(
            f"argument {i + 1} must be a date or timestamp, got {value.type}",
            i,
            hint="convert text with date()",
        )
    return value


def _as_text(args: Sequence[Value], i: int) -> Value:
    value = args[i]
    if is_text(value.type):
        return value
    try:
        return value.cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:
        raise ArgumentError(f"argument {i + 1} of type {value.type} cannot become text", i) from exc


def _null_where(mask: Value, value: Value) -> Value:
    """``value`` with null wherever ``mask`` is false (or null)."""
    return pc.if_else(mask, value, pa.scalar(None, value.type))


def _literal(args: Sequence[Value], i: int) -> object:
    return args[i].as_py()


# ---------------------------------------------------------------------------------------------
# text


def _text_kernel(kernel: Callable[[Value], Value], args: Sequence[Value]) -> Value:
    return kernel(_text(args, 0))


def _length(args: Sequence[Value]) -> Value:
    return pc.utf8_length(_text(args, 0)).cast(pa.int64())


def _substr(args: Sequence[Value]) -> Value:
    start = _literal(args, 1) - 1
    length = _literal(args, 2) if len(args) > 2 else None
    stop = None if length is None else start + length
    return pc.utf8_slice_codeunits(_text(args, 0), start, stop)


def _check_substr(literals: dict[int, object]) -> None:
    if literals[1] < 1:
        raise ArgumentError("start is 1-based and must be at least 1", 1)
    if literals.get(2, 0) < 0:
        raise ArgumentError("length must not be negative", 2)


def _concat(args: Sequence[Value]) -> Value:
    parts = [_as_text(args, i) for i in range(len(args))]
    # 'replace' rather than 'skip': pyarrow 25's 'skip' drops rows whose inputs are all null.
    return pc.binary_join_element_wise(*parts, "", null_handling="replace", null_replacement="")


def _match(kernel: Callable[..., Value], args: Sequence[Value]) -> Value:
    """contains/starts_with/ends_with/regex_match: the pattern is a literal (an option)."""
    return kernel(_text(args, 0), pattern=_literal(args, 1))


def _replace(args: Sequence[Value]) -> Value:
    return pc.replace_substring(
        _text(args, 0), pattern=_literal(args, 1), replacement=_literal(args, 2)
    )


def _check_replace(literals: dict[int, object]) -> None:
    # An empty pattern makes pyarrow's replace_substring loop without end.
    if literals[1] == "":
        raise ArgumentError("the text to replace must not be empty", 1)


def _check_regex(literals: dict[int, object]) -> None:
    try:
        pc.match_substring_regex(pa.array([""]), pattern=literals[1])
    except pa.ArrowInvalid as exc:
        message = str(exc).removeprefix("Invalid regular expression: ")
        raise ArgumentError(
            f"invalid regular expression: {message}",
            1,
            hint="patterns use RE2 syntax (no look-around or back-references)",
        ) from exc


# ---------------------------------------------------------------------------------------------
# null handling and choice


def _coalesce(args: Sequence[Value]) -> Value:
    values = align(args)
    try:
        return pc.coalesce(*values)
    except pa.ArrowNotImplementedError as exc:
        raise ArgumentError(f"cannot take arguments of types ({_type_names(values)})") from exc


def _if(args: Sequence[Value]) -> Value:
    condition = args[0]
    if pa.types.is_null(condition.type):
        condition = condition.cast(pa.bool_())
    elif not pa.types.is_boolean(condition.type):
        raise ArgumentError(f"the condition must be true/false, got {condition.type}", 0)
    then, otherwise = align(args[1:])
    try:
        # A null condition picks the else branch, as SQL's CASE WHEN does.
        return pc.if_else(pc.fill_null(condition, False), then, otherwise)
    except pa.ArrowNotImplementedError as exc:
        raise ArgumentError(
            f"both branches must have compatible types, got {then.type} and {otherwise.type}"
        ) from exc


# ---------------------------------------------------------------------------------------------
# numbers


def _abs(args: Sequence[Value]) -> Value:
    return pc.abs_checked(_number(args, 0))


def _round(args: Sequence[Value]) -> Value:
    ndigits = _literal(args, 1) if len(args) > 1 else 0
    return pc.round(_number(args, 0), ndigits, round_mode="half_towards_infinity")


def _integral(kernel: Callable[[Value], Value], args: Sequence[Value]) -> Value:
    """floor/ceil: integers are already whole, so they keep their type."""
    value = _number(args, 0)
    return value if pa.types.is_integer(value.type) else kernel(value)


def _elementwise(kernel: Callable[..., Value], args: Sequence[Value]) -> Value:
    values = align(args)
    try:
        return kernel(*values)
    except pa.ArrowNotImplementedError as exc:
        raise ArgumentError(f"cannot take arguments of types ({_type_names(values)})") from exc


# ---------------------------------------------------------------------------------------------
# conversions: values that cannot convert become null, they never raise


def _to_string(args: Sequence[Value]) -> Value:
    return _as_text(args, 0)


def _to_int(args: Sequence[Value]) -> Value:
    value = args[0]
    t = value.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return value.cast(pa.int64())
    if is_text(t):
        text = pc.utf8_trim_whitespace(value)
        valid = pc.match_substring_regex(text, _INT_TEXT)
        digits = _null_where(valid, pc.utf8_ltrim(text, "+"))
        try:
            return digits.cast(pa.int64())
        except pa.ArrowInvalid:  # out of int64's range somewhere: find where through decimals
            pass
        # Text of up to 38 characters fits decimal128(38), so the range check cannot overflow.
        short = pc.less_equal(pc.utf8_length(digits), 38)
        wide = _null_where(short, digits).cast(pa.decimal128(38, 0))
        in_range = pc.and_(pc.greater_equal(wide, _INT64_MIN), pc.less_equal(wide, _INT64_MAX))
        return _null_where(in_range, wide).cast(pa.int64())
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        as_float = value.cast(pa.float64())
        # Strictly inside int64's range (2**63 itself is representable as a float64 but not int).
        fits = pc.and_(pc.greater_equal(as_float, float(_INT64_MIN)), pc.less(as_float, 2.0**63))
        return pc.cast(_null_where(fits, pc.trunc(as_float)), pa.int64(), safe=False)
    raise ArgumentError(f"cannot convert {t} to an integer", 0)


def _to_float(args: Sequence[Value]) -> Value:
    value = args[0]
    t = value.type
    if is_numeric(t) or pa.types.is_boolean(t) or pa.types.is_null(t):
        return value.cast(pa.float64())
    if is_text(t):
        text = pc.utf8_trim_whitespace(value)
        valid = pc.match_substring_regex(text, _FLOAT_TEXT)
        return _null_where(valid, text).cast(pa.float64())
    raise ArgumentError(f"cannot convert {t} to a float", 0)


# ---------------------------------------------------------------------------------------------
# dates and times


def _date(args: Sequence[Value]) -> Value:
    value = args[0]
    t = value.type
    if pa.types.is_date32(t):
        return value
    if pa.types.is_null(t) or pa.types.is_date64(t) or pa.types.is_timestamp(t):
        return value.cast(pa.date32())
    if is_text(t):
        text = pc.utf8_trim_whitespace(value)
        try:  # the fast path: Arrow's cast takes exactly the valid 'YYYY-MM-DD' dates
            return text.cast(pa.date32())
        except pa.ArrowInvalid:
            pass
        # strptime accepts 2024-1-5 and rolls 2024-02-30 over to March 1st: the pattern rejects
        # the first, comparing the day of the month rejects the second.
        text = _null_where(pc.match_substring_regex(text, _DATE_TEXT), text)
        parsed = pc.strptime(text, format="%Y-%m-%d", unit="s", error_is_null=True)
        same_day = pc.equal(pc.day(parsed), pc.utf8_slice_codeunits(text, 8, 10).cast(pa.int64()))
        return _null_where(same_day, parsed).cast(pa.date32())
    raise ArgumentError(f"cannot convert {t} to a date", 0)


def _date_part(kernel: Callable[[Value], Value], args: Sequence[Value]) -> Value:
    return kernel(_temporal(args, 0))


def _today(args: Sequence[Value]) -> Value:
    return pa.scalar(_dt.datetime.now(_dt.timezone.utc).date(), pa.date32())


def _now(args: Sequence[Value]) -> Value:
    return pa.scalar(_dt.datetime.now(_dt.timezone.utc), pa.timestamp("us", tz="UTC"))


def _days_between(args: Sequence[Value]) -> Value:
    aligned = align(args)
    start, end = _temporal(aligned, 0), _temporal(aligned, 1)
    if start.type != end.type:
        start, end = start.cast(pa.date32()), end.cast(pa.date32())
    return pc.days_between(start, end)


# ---------------------------------------------------------------------------------------------
# operators


def _boolean(op: str, args: Sequence[Value], i: int) -> Value:
    value = args[i]
    if pa.types.is_null(value.type):
        return value.cast(pa.bool_())
    if not pa.types.is_boolean(value.type):
        raise ArgumentError(
            f"{op!r} needs true/false operands, got {value.type}",
            i,
            hint="compare it to something, e.g. 'x > 0' or 'x is not null'",
        )
    return value


def _logical(op: str, kernel: Callable[..., Value], args: Sequence[Value]) -> Value:
    """``and``/``or`` with SQL's three-valued (Kleene) logic: ``null or true`` is true."""
    return kernel(_boolean(op, args, 0), _boolean(op, args, 1))


def _not(args: Sequence[Value]) -> Value:
    return pc.invert(_boolean("not", args, 0))


def _type_error(op: str, values: Sequence[Value], hint: str | None = None) -> ArgumentError:
    return ArgumentError(f"cannot apply {op!r} to {_type_names(values, ' and ')}", hint=hint)


def _negate(args: Sequence[Value]) -> Value:
    value = args[0]
    if pa.types.is_null(value.type):
        return value
    if not is_numeric(value.type):
        raise _type_error("-", args)
    return pc.negate_checked(value)


def _compare(op: str, kernel: Callable[..., Value], args: Sequence[Value]) -> Value:
    """Comparisons; null on either side gives null."""
    left, right = align(args)
    lt, rt = left.type, right.type
    if pa.types.is_null(lt):  # after align, both sides are untyped nulls
        return pa.scalar(None, pa.bool_())
    try:
        return kernel(left, right)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise ArgumentError(f"cannot compare {lt} with {rt}", hint=_compare_hint(lt, rt)) from exc


def _compare_hint(left: pa.DataType, right: pa.DataType) -> str | None:
    if (is_text(left) and is_temporal(right)) or (is_text(right) and is_temporal(left)):
        return "convert the text with date()"
    if is_text(left) or is_text(right):
        return "convert one side with to_int(), to_float() or to_string()"
    return None


def _arithmetic(op: str, kernel: Callable[..., Value], args: Sequence[Value]) -> Value:
    """``+ - *`` with overflow checks; ``+`` joins two texts."""
    left, right = align(args)
    if pa.types.is_null(left.type):
        return left
    if op == "+" and (is_text(left.type) or is_text(right.type)):
        if not (is_text(left.type) and is_text(right.type)):
            raise _type_error(op, args, hint="join text and other values with concat()")
        return pc.binary_join_element_wise(left, right, "")
    try:
        return kernel(left, right)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise _type_error(op, (left, right)) from exc


def _divide(op: str, args: Sequence[Value]) -> Value:
    """``/`` and ``%``: a zero divisor gives null, never inf or an error. ``/`` always gives
    float64; ``%`` keeps integers integral and takes the dividend's sign, as SQL's MOD does."""
    left, right = align(args)
    if pa.types.is_null(left.type):
        return left
    if not (is_numeric(left.type) and is_numeric(right.type)):
        raise _type_error(op, (left, right))
    integers = pa.types.is_integer(left.type) and pa.types.is_integer(right.type)
    right = _null_where(pc.not_equal(right, 0), right)
    if op == "/" or not integers:
        left, right = left.cast(pa.float64()), right.cast(pa.float64())
    quotient = pc.divide(left, right)
    if op == "/":
        return quotient
    if not integers:  # integer division truncates towards zero; floats do the same here
        quotient = pc.trunc(quotient)
    return pc.subtract(left, pc.multiply(quotient, right))


UNARY_OPERATORS: dict[str, Callable[[Sequence[Value]], Value]] = {"-": _negate, "not": _not}
BINARY_OPERATORS: dict[str, Callable[[Sequence[Value]], Value]] = {
    "and": partial(_logical, "and", pc.and_kleene),
    "or": partial(_logical, "or", pc.or_kleene),
    "==": partial(_compare, "==", pc.equal),
    "!=": partial(_compare, "!=", pc.not_equal),
    "<": partial(_compare, "<", pc.less),
    "<=": partial(_compare, "<=", pc.less_equal),
    ">": partial(_compare, ">", pc.greater),
    ">=": partial(_compare, ">=", pc.greater_equal),
    "+": partial(_arithmetic, "+", pc.add_checked),
    "-": partial(_arithmetic, "-", pc.subtract_checked),
    "*": partial(_arithmetic, "*", pc.multiply_checked),
    "/": partial(_divide, "/"),
    "%": partial(_divide, "%"),
}


def is_in(operand: Value, values: pa.Array, negated: bool) -> Value:
    """``operand [not] in values`` (``values`` from a literal list); a null operand gives null."""
    if is_text(values.type) and is_temporal(operand.type):
        values = pa.array([parse_temporal(v, operand.type) for v in values])
    values = coerce_to(values, operand.type)
    operand = coerce_to(operand, values.type)
    try:
        result = pc.is_in(operand, value_set=values)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        raise ArgumentError(
            f"cannot compare {operand.type} with a list of {values.type}",
            hint=_compare_hint(operand.type, values.type),
        ) from exc
    has_nulls = not operand.is_valid if isinstance(operand, pa.Scalar) else operand.null_count
    if has_nulls:
        result = _null_where(pc.is_valid(operand), result)
    return pc.invert(result) if negated else result


# ---------------------------------------------------------------------------------------------
# the function table


@dataclass(frozen=True)
class FunctionSpec:
    """How a function is called; the parser checks all of this before any data is seen."""

    signature: str  # "substr(text, start[, length])": the name, then the usage shown in errors
    impl: Callable[[Sequence[Value]], Value]
    min_args: int
    max_args: int | None  # None: any number from min_args on
    literal_args: tuple[tuple[int, type], ...] = ()  # (index, int or str) that must be literals
    check: Callable[[dict[int, object]], None] | None = None  # validates those literals
    condition_args: frozenset[int] = frozenset()  # only decide the result (lineage INDIRECT)
    volatile: bool = False  # reads the clock, so never folded at parse time

    @property
    def name(self) -> str:
        return self.signature.partition("(")[0]

    def arity(self) -> str:
        def count(n: int) -> str:
            return f"{n} argument{'' if n == 1 else 's'}"

        if self.max_args is None:
            return f"at least {count(self.min_args)}"
        if self.min_args == self.max_args:
            return count(self.min_args)
        return f"{self.min_args} to {count(self.max_args)}"


_STR, _INT = ((1, str),), ((1, int),)
_SPECS = (
    FunctionSpec("lower(text)", partial(_text_kernel, pc.utf8_lower), 1, 1),
    FunctionSpec("upper(text)", partial(_text_kernel, pc.utf8_upper), 1, 1),
    FunctionSpec("trim(text)", partial(_text_kernel, pc.utf8_trim_whitespace), 1, 1),
    FunctionSpec("length(text)", _length, 1, 1),
    FunctionSpec(
        "substr(text, start[, length])", _substr, 2, 3, ((1, int), (2, int)), _check_substr
    ),
    FunctionSpec("concat(value, ...)", _concat, 1, None),
    FunctionSpec("contains(text, 'part')", partial(_match, pc.match_substring), 2, 2, _STR),
    FunctionSpec("starts_with(text, 'prefix')", partial(_match, pc.starts_with), 2, 2, _STR),
    FunctionSpec("ends_with(text, 'suffix')", partial(_match, pc.ends_with), 2, 2, _STR),
    FunctionSpec(
        "replace(text, 'old', 'new')", _replace, 3, 3, ((1, str), (2, str)), _check_replace
    ),
    FunctionSpec(
        "regex_match(text, 'pattern')",
        partial(_match, pc.match_substring_regex),
        2,
        2,
        _STR,
        _check_regex,
    ),
    FunctionSpec("coalesce(value, ...)", _coalesce, 1, None),
    FunctionSpec("if(condition, then, else)", _if, 3, 3, condition_args=frozenset({0})),
    FunctionSpec("abs(number)", _abs, 1, 1),
    FunctionSpec("round(number[, ndigits])", _round, 1, 2, _INT),
    FunctionSpec("floor(number)", partial(_integral, pc.floor), 1, 1),
    FunctionSpec("ceil(number)", partial(_integral, pc.ceil), 1, 1),
    FunctionSpec("min(value, value, ...)", partial(_elementwise, pc.min_element_wise), 2, None),
    FunctionSpec("max(value, value, ...)", partial(_elementwise, pc.max_element_wise), 2, None),
    FunctionSpec("to_string(value)", _to_string, 1, 1),
    FunctionSpec("to_int(value)", _to_int, 1, 1),
    FunctionSpec("to_float(value)", _to_float, 1, 1),
    FunctionSpec("date(text or timestamp)", _date, 1, 1),
    FunctionSpec("year(date)", partial(_date_part, pc.year), 1, 1),
    FunctionSpec("month(date)", partial(_date_part, pc.month), 1, 1),
    FunctionSpec("day(date)", partial(_date_part, pc.day), 1, 1),
    FunctionSpec("today()", _today, 0, 0, volatile=True),
    FunctionSpec("now()", _now, 0, 0, volatile=True),
    FunctionSpec("days_between(start, end)", _days_between, 2, 2),
)

FUNCTIONS: dict[str, FunctionSpec] = {spec.name: spec for spec in _SPECS}
"""Every built-in function by its lower-case name."""
