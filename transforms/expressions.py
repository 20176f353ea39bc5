"""A small, safe expression language for ``map``, ``filter`` and validation steps.

Spec files say things like ``amount * quantity``, ``status in ['paid', 'shipped'] and amount > 0``
or ``if(country == 'US', 'domestic', 'intl')``. This module turns such text into an
:class:`Expression` that evaluates against a whole ``pyarrow.Table`` at once.

Design:

* **Never Python evaluation.** Text goes through a hand-written tokenizer and a Pratt parser
  into a tiny AST of frozen dataclasses; nothing is passed to ``eval``, ``exec``, ``compile`` or
  ``ast``. Names are only ever looked up as table columns, struct children or entries of the
  function table, and bare names starting with ``__`` are refused outright, so
  ``__import__('os')`` or ``x.__class__`` can only ever be errors.
* **Syntax here, semantics there.** This module owns tokens, grammar, AST, errors and lineage;
  ``transforms.expression_functions`` owns what each operator and function computes.
* **Columnar evaluation.** Every node evaluates to a ``pyarrow`` array or scalar through
  ``pyarrow.compute`` kernels over whole columns; scalars broadcast only at the very end. There
  are no per-row Python loops, which is what keeps a step above a million rows a second.
* **Errors before data.** Literal-only subexpressions are folded while parsing (``1 + 2`` becomes
  ``3``, ``'abc' * 2`` fails at once), and arity, literal-only arguments and regular expressions
  are checked then too. Every :class:`ExpressionError` names the problem, the 1-based column and,
  where one helps, a hint (a close function or field name, ``==`` for ``=``...).
* **SQL semantics.** Three-valued logic (``and``/``or`` are Kleene), comparisons with null give
  null, division or modulo by zero gives null, integer ``/`` integer gives a float.
* **Cheap to ship.** ``parse`` is memoised, and an :class:`Expression` pickles as its source text
  and re-parses on load, so Beam can pickle DoFns holding expressions.
* **Lineage.** ``fields``, ``direct_fields``, ``indirect_fields`` and ``identity_field`` describe
  how input columns reach the result, for OpenLineage's DIRECT/INDIRECT column lineage.

Grammar (loosest binding first; keywords and function names are case-insensitive)::

    expr       := expr "or" expr | expr "and" expr | "not" expr | comparison
    comparison := sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum
                      | ["not"] "in" "[" [literal ("," literal)*] "]"
                      | "is" ["not"] "null" ]              (comparisons do not chain)
    sum        := sum ("+" | "-") product | product
    product    := product ("*" | "/" | "%") unary | unary
    unary      := "-" unary | primary
    primary    := number | string | "true" | "false" | "null" | "(" expr ")"
                | function "(" [expr ("," expr)*] ")" | field
    field      := name ("." name)*                        (struct children: customer.email)
    name       := [A-Za-z_][A-Za-z0-9_]* not starting with "__" | "`" any text "`"
    number     := 12 | 1.5 | .5 | 1e3                     (int64 or float64)
    string     := '...' | "..."    (escapes \\n \\t \\r \\\\ \\' \\"; other backslashes kept)
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import BeamwrightError, suggest
from connectors.records import POSITION_COLUMNS
from transforms.expression_functions import (
    BINARY_OPERATORS,
    FUNCTIONS,
    UNARY_OPERATORS,
    ArgumentError,
    Value,
    is_in,
)

__all__ = ["Expression", "ExpressionError", "parse"]

MAX_DEPTH = 100
"""How deeply expressions may nest; keeps parsing and evaluation far from Python's stack limit."""

_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
_INT64_MAX = 2**63 - 1
_EMPTY = pa.table({})


class ExpressionError(BeamwrightError, ValueError):
    """Raised for syntax errors, unknown functions/fields, wrong arity, and type errors.

    The message names the problem, the 1-based column in the expression text, and a hint where
    one helps (``lowr`` -> "did you mean 'lower'?", an unknown field -> the closest field names,
    ``=`` -> "did you mean '=='?"), because spec authors fix expressions from this message alone.
    The parts are also attributes, for tools that underline the column.
    """

    def __init__(self, problem: str, source: str, column: int, hint: str | None = None) -> None:
        message = f"{problem} at column {column} of {source!r}"
        super().__init__(f"{message}; {hint}" if hint else message)
        self.problem = problem
        self.source = source
        self.column = column
        self.hint = hint

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[type[ExpressionError], tuple[str, str, int, str | None]]:
        # Beam ships exceptions between workers; keep all four parts across pickling.
        return (type(self), (self.problem, self.source, self.column, self.hint))


# ---------------------------------------------------------------------------------------------
# tokens


class _Token(NamedTuple):
    kind: str  # "number", "string", "name", "quoted" (backticks), "op" or "end"
    text: str  # as written
    value: object  # int/float for numbers, the decoded text for strings and names
    pos: int  # 0-based offset in the source
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "name" and self.text.lower() in words

    def is_op(self, *ops: str) -> bool:
        return self.kind == "op" and self.text in ops

    def describe(self) -> str:
        if self.kind == "end":
            return "end of expression"
        if self.kind in ("number", "string"):
            return f"{'text' if self.kind == 'string' else 'number'} {self.text}"
        if self.kind == "name" and self.text.lower() not in _KEYWORDS:
            return f"name {self.text!r}"
        return repr(self.text)


_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]*")
_OPERATORS = ("==", "!=", "<=", ">=", *"<>+-*/%()[],.")  # longest first
_MISTAKES = (  # tried before the real operators, longest first
    ("<>", "did you mean '!='?"),
    ("&&", "use 'and'"),
    ("||", "use 'or'"),
    ("=", "did you mean '=='?"),
    ("!", "use 'not' to negate, or '!=' to compare"),
    ("&", "use 'and'"),
    ("|", "use 'or'"),
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(source):
        char = source[i]
        if char.isspace():
            i += 1
            continue
        if char in "'\"":
            token = _scan_string(source, i)
        elif char == "`":
            token = _scan_quoted_name(source, i)
        elif number := _NUMBER.match(source, i):
            token = _number_token(source, number)
        elif name := _NAME.match(source, i):
            token = _Token("name", name.group(), name.group(), i, name.end())
        else:
            token = _scan_operator(source, i)
        tokens.append(token)
        i = token.end
    tokens.append(_Token("end", "", None, len(source), len(source)))
    return tokens


def _scan_string(source: str, start: int) -> _Token:
    """A quoted string. ``\\n \\t \\r \\\\ \\' \\"`` are escapes; any other backslash stays as
    written, so regular expressions such as ``'\\d+'`` need no doubling."""
    quote = source[start]
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        char = source[i]
        if char == "\\" and i + 1 < len(source):
            chars.append(_ESCAPES.get(source[i + 1], source[i : i + 2]))
            i += 2
        elif char == quote:
            return _Token("string", source[start : i + 1], "".join(chars), start, i + 1)
        else:
            chars.append(char)
            i += 1
    raise ExpressionError("unterminated text", source, start + 1, f"close it with {quote}")


def _scan_quoted_name(source: str, start: int) -> _Token:
    """A backtick-quoted field name such as `` `order id` ``; a doubled backtick stands for one."""
    chars: list[str] = []
    i = start + 1
    while i < len(source):
        if source[i] != "`":
            chars.append(source[i])
            i += 1
        elif source.startswith("``", i):
            chars.append("`")
            i += 2
        elif not chars:
            raise ExpressionError("empty field name ``", source, start + 1)
        else:
            return _Token("quoted", source[start : i + 1], "".join(chars), start, i + 1)
    raise ExpressionError("unterminated field name", source, start + 1, "close it with `")


def _number_token(source: str, match: re.Match[str]) -> _Token:
    text, start, end = match.group(), match.start(), match.end()
    tail = _NUMBER_TAIL.match(source, end).group()
    if tail:
        raise ExpressionError(f"invalid number {text + tail!r}", source, start + 1)
    if any(c in text for c in ".eE"):
        return _Token("number", text, float(text), start, end)
    if int(text) > _INT64_MAX:
        hint = f"write it as a float, e.g. {text}.0"
        raise ExpressionError(f"integer {text} does not fit 64 bits", source, start + 1, hint)
    return _Token("number", text, int(text), start, end)


def _scan_operator(source: str, start: int) -> _Token:
    for text, hint in _MISTAKES:
        if source.startswith(text, start) and not any(
            op.startswith(text) and source.startswith(op, start) for op in _OPERATORS
        ):
            raise ExpressionError(f"{text!r} is not an operator", source, start + 1, hint)
    for op in _OPERATORS:
        if source.startswith(op, start):
            return _Token("op", op, op, start, start + len(op))
    raise ExpressionError(f"unexpected character {source[start]!r}", source, start + 1)


# ---------------------------------------------------------------------------------------------
# the AST (internal). Every node keeps where it came from: ``pos`` is where errors point (an
# operator or a name), ``start:end`` the fragment of source they quote.


class _Span(NamedTuple):
    pos: int
    start: int
    end: int


@dataclass(frozen=True)
class Literal:
    value: pa.Scalar
    span: _Span


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]  # ("customer", "email") for customer.email
    span: _Span

    @property
    def name(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node
    span: _Span


@dataclass(frozen=True)
class Binary:
    op: str  # a key of BINARY_OPERATORS
    left: Node
    right: Node
    span: _Span


@dataclass(frozen=True)
class InList:
    operand: Node
    values: pa.Array
    negated: bool
    span: _Span


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool
    span: _Span


@dataclass(frozen=True)
class Call:
    name: str  # a key of FUNCTIONS
    args: tuple[Node, ...]
    span: _Span


Node = Literal | FieldRef | Unary | Binary | InList | IsNull | Call


def _children(node: Node) -> tuple[Node, ...]:
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, Unary | InList | IsNull):
        return (node.operand,)
    return node.args if isinstance(node, Call) else ()


def _walk(root: Node) -> Iterator[tuple[Node, int]]:
    """Every node with its depth (the root is 1), iteratively: no recursion limit applies."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in _children(node))


def _field_refs(root: Node) -> list[FieldRef]:
    """The field references in source order."""
    refs = [node for node, _ in _walk(root) if isinstance(node, FieldRef)]
    return sorted(refs, key=lambda ref: ref.span.pos)


# ---------------------------------------------------------------------------------------------
# parsing

_COMPARISONS = frozenset({"==", "!=", "<", "<=", ">", ">="})
_PRECEDENCE = ("or", "and", "not", "== != < <= > >= in is", "+ -", "* / %")  # loosest first
_BINDING = {op: power for power, ops in enumerate(_PRECEDENCE, 1) for op in ops.split()}
_BINDING["not in"] = _COMPARE_BINDING = _BINDING["in"]
_NOT_BINDING, _NEGATE_BINDING = _BINDING.pop("not"), len(_PRECEDENCE) + 1  # the prefix ones


class _Parser:
    """Pratt parser over the token list; folds literal-only nodes as it builds them."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.depth = 0

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error(0, "the expression is empty")
        node = self.expression(0)
        token = self.peek()
        if token.kind != "end":
            hint = "no '(' is open" if token.is_op(")") else "an operator is missing before it"
            raise self.error(token.pos, f"unexpected {token.describe()}", hint)
        return node

    # -- helpers

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        self.index += 1
        return self.tokens[self.index - 1]

    def error(self, pos: int, problem: str, hint: str | None = None) -> ExpressionError:
        return ExpressionError(problem, self.source, pos + 1, hint)

    def fragment(self, node: Node) -> str:
        return self.source[node.span.start : node.span.end]

    def close(self, opening: _Token, closing: str, what: str) -> _Token:
        token = self.advance()
        if token.is_op(closing):
            return token
        found = "missing" if token.kind == "end" else f"unexpected {token.describe()} instead of"
        hint = f"to close the {opening.text!r} at column {opening.pos + 1}"
        raise self.error(token.pos, f"{found} {closing!r} in {what}", hint)

    def fold(self, node: Node) -> Node:
        """``node`` evaluated now if all its operands are literals (clock functions excepted)."""
        if isinstance(node, Call) and FUNCTIONS[node.name].volatile:
            return node
        if all(isinstance(child, Literal) for child in _children(node)):
            return Literal(_Evaluator(self.source, _EMPTY).compute(node), node.span)
        return node

    # -- grammar

    def expression(self, min_binding: int) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _too_deep(self.source, self.peek().pos)
        left = self.prefix()
        compared = False
        while (op := self.infix_operator()) is not None and _BINDING[op] > min_binding:
            token = self.advance()
            if op == "not in":
                self.advance()
            if _BINDING[op] == _COMPARE_BINDING:
                if compared:
                    hint = "combine them with 'and', e.g. 'a < b and b < c'"
                    raise self.error(token.pos, "comparisons cannot be chained", hint)
                compared = True
            left = self.infix(op, token, left)
        self.depth -= 1
        return left

    def infix_operator(self) -> str | None:
        token = self.peek()
        if token.kind == "op" and token.text in _BINDING:
            return token.text
        if token.is_word("and", "or", "in", "is"):
            return token.text.lower()
        if token.is_word("not") and self.tokens[self.index + 1].is_word("in"):
            return "not in"
        return None

    def prefix(self) -> Node:
        token = self.advance()
        span = _Span(token.pos, token.pos, token.end)
        if token.kind == "number":
            kind = pa.int64() if isinstance(token.value, int) else pa.float64()
            return Literal(pa.scalar(token.value, kind), span)
        if token.kind == "string":
            return Literal(pa.scalar(token.value, pa.string()), span)
        if token.kind == "name" and self.peek().is_op("(") and not token.is_word(*_KEYWORDS):
            return self.call(token)
        if token.kind in ("name", "quoted"):
            return self.word(token, span)
        if token.is_op("("):
            inner = self.expression(0)
            closing = self.close(token, ")", "parentheses")
            return dataclasses.replace(inner, span=_Span(inner.span.pos, token.pos, closing.end))
        if token.is_op("-"):
            return self.unary("-", token, _NEGATE_BINDING)
        if token.is_op("["):
            raise self.error(token.pos, "a list is only allowed after 'in' or 'not in'")
        raise self.error(token.pos, f"unexpected {token.describe()}", "an operand is missing")

    def unary(self, op: str, token: _Token, binding: int) -> Node:
        operand = self.expression(binding)
        return self.fold(Unary(op, operand, _Span(token.pos, token.pos, operand.span.end)))

    def word(self, token: _Token, span: _Span) -> Node:
        """A keyword literal, ``not``, or a field reference (possibly dotted)."""
        word = token.text.lower() if token.kind == "name" else None
        if word in ("true", "false", "null"):
            return Literal(pa.scalar(None if word == "null" else word == "true"), span)
        if word == "not":
            return self.unary("not", token, _NOT_BINDING)
        if word in _KEYWORDS:
            raise self.error(token.pos, f"unexpected {token.describe()}", "an operand is missing")
        self.check_name(token)
        path, last = [token.value], token
        while self.peek().is_op("."):
            self.advance()
            last = self.advance()
            if last.kind not in ("name", "quoted"):
                problem = f"expected a field name after '.', got {last.describe()}"
                raise self.error(last.pos, problem)
            self.check_name(last)
            path.append(last.value)
        ref = FieldRef(tuple(path), _Span(token.pos, token.pos, last.end))
        if self.peek().is_op("("):
            hint = "only built-in functions can be called, e.g. lower(email)"
            raise self.error(self.peek().pos, f"{ref.name!r} is not a function", hint)
        return ref

    def check_name(self, token: _Token) -> None:
        if token.kind == "name" and token.text.startswith("__"):
            problem = f"names starting with '__' are not allowed ({token.text!r})"
            hint = "a column really named like that can be quoted in backticks"
            raise self.error(token.pos, problem, hint)

    def call(self, token: _Token) -> Node:
        self.check_name(token)
        name = token.text.lower()
        spec = FUNCTIONS.get(name)
        if spec is None:
            hint = suggest(name, FUNCTIONS, "functions", always=False)
            raise self.error(token.pos, f"unknown function {token.text!r}", hint)
        opening = self.advance()
        args: list[Node] = []
        while not self.peek().is_op(")"):
            args.append(self.expression(0))
            if not self.peek().is_op(","):
                break
            self.advance()
        closing = self.close(opening, ")", f"the arguments of {name}()")
        if len(args) < spec.min_args or (spec.max_args is not None and len(args) > spec.max_args):
            problem = f"{name}() takes {spec.arity()}, got {len(args)}"
            raise self.error(token.pos, problem, f"usage: {spec.signature}")
        literals: dict[int, object] = {}
        for index, kind in spec.literal_args:
            if index < len(args):
                arg = args[index]
                literals[index] = arg.value.as_py() if isinstance(arg, Literal) else None
                if type(literals[index]) is not kind:
                    what = "an integer" if kind is int else "a text"
                    problem = f"{name}() argument {index + 1} must be {what} literal"
                    raise self.error(arg.span.pos, problem, f"usage: {spec.signature}")
        if spec.check is not None:
            try:
                spec.check(literals)
            except ArgumentError as exc:
                at = args[exc.index or 0].span.pos
                raise self.error(at, f"{name}(): {exc}", exc.hint) from exc
        return self.fold(Call(name, tuple(args), _Span(token.pos, token.pos, closing.end)))

    def infix(self, op: str, token: _Token, left: Node) -> Node:
        if op in ("in", "not in"):
            return self.fold(self.in_list(op, token, left))
        if op == "is":
            negated = self.peek().is_word("not")
            if negated:
                self.advance()
            null = self.advance()
            if not null.is_word("null"):
                hint = "'is' only tests for null; compare values with '=='"
                raise self.error(null.pos, f"expected null after 'is', got {null.describe()}", hint)
            return self.fold(IsNull(left, negated, _Span(token.pos, left.span.start, null.end)))
        right = self.expression(_BINDING[op])
        if op in _COMPARISONS:
            for side, other in ((left, right), (right, left)):
                if isinstance(side, Literal) and pa.types.is_null(side.value.type):
                    test = "is not null" if op == "!=" else "is null"
                    hint = f"use '{self.fragment(other)} {test}'"
                    raise self.error(token.pos, "comparing with null always gives null", hint)
        return self.fold(Binary(op, left, right, _Span(token.pos, left.span.start, right.span.end)))

    def in_list(self, op: str, token: _Token, operand: Node) -> Node:
        opening = self.advance()
        if not opening.is_op("["):
            problem = f"expected '[' after '{op}', got {opening.describe()}"
            raise self.error(opening.pos, problem, "write the values as a list: x in ['a', 'b']")
        items: list[Node] = []
        while not self.peek().is_op("]"):
            item = self.expression(0)
            if not isinstance(item, Literal):
                raise self.error(item.span.pos, "list items must be literal values")
            if pa.types.is_null(item.value.type):
                hint = f"test for it separately: '{self.fragment(operand)} is null or ...'"
                raise self.error(item.span.pos, "null in a list never matches", hint)
            items.append(item)
            if not self.peek().is_op(","):
                break
            self.advance()
        closing = self.close(opening, "]", "the list")
        try:
            values = pa.array([item.value.as_py() for item in items])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise self.error(opening.pos, "list items must all have the same type") from exc
        span = _Span(token.pos, operand.span.start, closing.end)
        return InList(operand, values, op == "not in", span)


def _too_deep(source: str, pos: int) -> ExpressionError:
    problem = f"expression is nested too deeply (over {MAX_DEPTH} levels)"
    return ExpressionError(problem, source, pos + 1, "split it into several steps")


# ---------------------------------------------------------------------------------------------
# evaluation


class _Evaluator:
    """Evaluates AST nodes against one table; errors quote the failing node's source."""

    def __init__(self, source: str, table: pa.Table) -> None:
        self.source = source
        self.table = table

    def error(self, node: Node, problem: str, hint: str | None = None) -> ExpressionError:
        return ExpressionError(problem, self.source, node.span.pos + 1, hint)

    def where(self, node: Node) -> str:
        """`` in 'fragment'`` naming the failing part, unless it is the whole expression."""
        fragment = self.source[node.span.start : node.span.end]
        return "" if fragment == self.source.strip() else f" in {fragment!r}"

    def compute(self, node: Node) -> Value:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, FieldRef):
            return self.field(node)
        if isinstance(node, IsNull):
            operand = self.compute(node.operand)
            return pc.is_valid(operand) if node.negated else pc.is_null(operand)
        operands = [self.compute(child) for child in _children(node)]
        try:
            if isinstance(node, InList):
                return is_in(operands[0], node.values, node.negated)
            if isinstance(node, Unary):
                return UNARY_OPERATORS[node.op](operands)
            if isinstance(node, Binary):
                return BINARY_OPERATORS[node.op](operands)
            return FUNCTIONS[node.name].impl(operands)
        except ArgumentError as exc:
            at = node if exc.index is None else _children(node)[exc.index]
            label = f"{node.name}(): " if isinstance(node, Call) else ""
            raise self.error(at, f"{label}{exc}{self.where(node)}", exc.hint) from exc
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            what = f"{node.name}()" if isinstance(node, Call) else repr(node.op)
            types = ", ".join(str(operand.type) for operand in operands)
            problem = f"{what} cannot take arguments of types ({types}){self.where(node)}"
            raise self.error(node, problem) from exc
        except pa.ArrowInvalid as exc:  # integer overflow and the like
            raise self.error(node, f"{exc}{self.where(node)}") from exc

    def field(self, node: FieldRef) -> Value:
        name = node.path[0]
        columns = self.table.column_names
        if name not in columns:
            visible = [c for c in columns if c not in POSITION_COLUMNS]
            hint = suggest(name, visible, "available columns", always=True)
            raise self.error(node, f"unknown field {name!r}", hint)
        value = self.table.column(name)
        for depth, child in enumerate(node.path[1:], start=1):
            parent = ".".join(node.path[:depth])
            if not pa.types.is_struct(value.type):
                problem = f"{parent!r} is {value.type}, not a struct, so it has no field {child!r}"
                raise self.error(node, problem)
            index = value.type.get_field_index(child)
            if index < 0:
                children = [value.type.field(i).name for i in range(value.type.num_fields)]
                hint = suggest(child, children, "its fields", always=True)
                raise self.error(node, f"unknown field {child!r} in {parent!r}", hint)
            value = pc.struct_field(value, [index])
        # Readers hand text over dictionary-encoded (Parquet), as large_string or string_view
        # (Polars, DuckDB); the text kernels and operators expect plain string.
        if pa.types.is_dictionary(value.type):
            value = value.cast(value.type.value_type)
        if pa.types.is_large_string(value.type) or pa.types.is_string_view(value.type):
            value = value.cast(pa.string())
        return value


# ---------------------------------------------------------------------------------------------
# the public API


@dataclass(frozen=True)
class Expression:
    """A parsed expression; build it with :func:`parse`, then evaluate it against tables.

    Equality, hashing and pickling go by ``source`` alone: the AST is a function of the text,
    and re-parsing on unpickle keeps pickles tiny and independent of the AST's shape.
    """

    source: str
    root: Node = dataclasses.field(repr=False, compare=False)  # the AST; internal

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_parse_source, (self.source,))

    def evaluate(self, table: pa.Table) -> pa.ChunkedArray | pa.Array:
        """The value for every row of ``table``; constants are broadcast to ``table.num_rows``.

        A bare field reference returns the column itself, without copying (except that text in
        another encoding, such as dictionary or large_string, comes back as plain string).
        """
        result = _Evaluator(self.source, table).compute(self.root)
        return pa.repeat(result, table.num_rows) if isinstance(result, pa.Scalar) else result

    def evaluate_predicate(self, table: pa.Table) -> pa.Array:
        """A boolean mask for ``table.filter``. Null counts as false, as in a SQL WHERE clause,
        so rows the expression cannot decide are dropped rather than failing the batch."""
        result = _Evaluator(self.source, table).compute(self.root)
        if pa.types.is_null(result.type):
            result = result.cast(pa.bool_())
        if not pa.types.is_boolean(result.type):
            problem = f"a filter must be true/false, but this expression gives {result.type}"
            hint = "compare it to something, e.g. 'x > 0' or 'x is not null'"
            raise ExpressionError(problem, self.source, self.root.span.pos + 1, hint)
        mask = pc.fill_null(result, False)
        if isinstance(mask, pa.Scalar):
            return pa.repeat(mask, table.num_rows)
        return mask.combine_chunks() if isinstance(mask, pa.ChunkedArray) else mask

    @property
    def fields(self) -> frozenset[str]:
        """Every input field referenced; struct children as dotted names (``customer.email``)."""
        return frozenset(ref.name for ref in _field_refs(self.root))

    @property
    def direct_fields(self) -> frozenset[str]:
        """Fields whose values flow into the result (OpenLineage DIRECT)."""
        return self._lineage()[0]

    @property
    def indirect_fields(self) -> frozenset[str]:
        """Fields used only to decide, i.e. only inside the condition of ``if()`` (OpenLineage
        INDIRECT). A field also used anywhere else is direct; no field is both."""
        return self._lineage()[1]

    @property
    def identity_field(self) -> str | None:
        """The field name when the whole expression is a bare field reference (a copy or a
        rename, for lineage), else None."""
        return self.root.name if isinstance(self.root, FieldRef) else None

    def _lineage(self) -> tuple[frozenset[str], frozenset[str]]:
        direct: set[str] = set()
        deciding: set[str] = set()
        stack: list[tuple[Node, bool]] = [(self.root, False)]
        while stack:
            node, in_condition = stack.pop()
            if isinstance(node, FieldRef):
                (deciding if in_condition else direct).add(node.name)
            elif isinstance(node, Call):
                conditions = FUNCTIONS[node.name].condition_args
                stack.extend((a, in_condition or i in conditions) for i, a in enumerate(node.args))
            else:
                stack.extend((child, in_condition) for child in _children(node))
        return frozenset(direct), frozenset(deciding - direct)


def parse(text: str, *, known_fields: Collection[str] | None = None) -> Expression:
    """Parse ``text`` into an :class:`Expression`; raises :class:`ExpressionError`.

    With ``known_fields`` (column names, dotted names for struct children) a reference to any
    other field fails now, naming the closest known fields, rather than at the first batch. A
    dotted reference into a known struct whose children are not listed cannot be checked, so it
    is accepted.
    """
    expression = _parse_source(text)
    if known_fields is not None:
        known = set(known_fields)
        for ref in _field_refs(expression.root):
            if not _is_known(ref.path, known):
                hint = suggest(ref.name, known, "known fields", always=True)
                raise ExpressionError(f"unknown field {ref.name!r}", text, ref.span.pos + 1, hint)
    return expression


def _is_known(path: Sequence[str], known: set[str]) -> bool:
    if ".".join(path) in known:
        return True
    for length in range(len(path) - 1, 0, -1):
        prefix = ".".join(path[:length])
        if prefix in known:
            return not any(name.startswith(prefix + ".") for name in known)
    return False


@functools.lru_cache(maxsize=1024)
def _parse_source(text: str) -> Expression:
    root = _Parser(text).parse()
    for node, depth in _walk(root):
        if depth > MAX_DEPTH:  # long left-deep chains such as a + a + ... + a
            raise _too_deep(text, node.span.pos)
    return Expression(text, root)
