"""Vectorised PII masking of Arrow columns.

A pipeline spec names, per column, how personal data is made safe before it leaves the
pipeline. Each strategy fits a different downstream need:

``redact``
    Replace every value with a fixed string: nothing of the value survives.
``partial``
    Keep a few leading/trailing characters (the last 4 digits of a card) so people can still
    recognise a value, mask the rest. Short values are masked whole so they are never revealed.
``hash``
    Salted one-way digest: equal inputs stay equal (counting, grouping) but guessable values such
    as emails cannot be recovered with a dictionary of candidates without the salt.
``pseudonymize``
    Keyed HMAC token: deterministic per key, so datasets masked with the same key still join,
    and without the key nobody can compute the token of a known value.
``bucket``
    Generalise a number into a range label (``"$1M-$10M"``) for analytics without exact values.
``email_domain``
    Keep only the domain of an email address, which is what most reporting needs.

Common behaviour, whatever the strategy:

* Nulls stay null. Masking never changes the number of rows.
* Numbers, booleans, dates and times are masked in their Arrow string form (``42`` -> ``"42"``)
  by every strategy but ``bucket``, which needs numbers. ``hash`` and ``pseudonymize`` digest
  binary columns as raw bytes; the other text strategies refuse binary columns, which may not be
  valid UTF-8.
* The output is a ``string`` column (``large_string`` for ``large_string``/``large_binary``
  input). Dictionary-encoded input stays dictionary-encoded: only the dictionary is masked, which
  is both cheaper and keeps the column compact.
* Problems with options or column types raise :class:`MaskError`; values never do, so one odd
  row cannot stop a pipeline.
* Secret options (``salt``, ``key``) are wrapped in :class:`HiddenOption` so they never show in the
  repr of a rule, a log line or an error message.

The row-position columns of :mod:`connectors.records` are never masked: dead letters need them
to point at the source row.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.errors import BeamwrightError
from connectors.records import POSITION_COLUMNS

Values: TypeAlias = pa.Array | pa.ChunkedArray
"""A column: one Arrow array or a chunked one, as found in a table."""

_Masker: TypeAlias = Callable[[Values, str], Values]
"""Masks a non-dictionary column; the string names the column in error messages."""

STRATEGIES: tuple[str, ...] = (
    "redact",
    "partial",
    "hash",
    "pseudonymize",
    "bucket",
    "email_domain",
)
"""The masking strategies a :class:`MaskRule` may name."""

_REQUIRED = object()
"""Default marker for options that have no default."""

_OPTIONS: dict[str, dict[str, object]] = {
    "redact": {"replacement": "[REDACTED]"},
    "partial": {"keep_last": 4, "mask_char": "*", "keep_first": 0, "keep_separators": ""},
    "hash": {"salt": _REQUIRED, "algorithm": "sha256"},
    "pseudonymize": {"key": _REQUIRED, "length": None, "prefix": ""},
    "bucket": {"boundaries": _REQUIRED, "labels": None, "prefix": "", "suffix": ""},
    "email_domain": {"mask": "***"},
}
"""Each strategy's options and their defaults."""

_PUBLIC_OPTIONS = frozenset(
    name for options in _OPTIONS.values() for name in options if name not in ("salt", "key")
)
"""Options whose values may be shown. Any other value is hidden in :class:`MaskRule`, so that a
misspelt ``slat`` is not printed either."""

_HASH_ALGORITHMS = ("sha256", "sha384", "sha512", "sha3_256", "sha3_512", "blake2b", "blake2s")
"""Digests ``hash`` accepts: no MD5 or SHA-1, which are broken."""

_MIN_SALT_BYTES = 8
_MIN_KEY_BYTES = 16
_MIN_TOKEN_CHARS = 16
_SHA256_HEX_CHARS = 64
_HMAC_BLOCK_BYTES = 64  # SHA-256's block size, as HMAC pads the key to it (RFC 2104)

_REQUIRED_HINTS = {
    "salt": f"pass a secret salt (bytes or str, at least {_MIN_SALT_BYTES} bytes) so hashes of "
    "guessable values such as emails cannot be reversed with a dictionary",
    "key": f"pass a secret key of at least {_MIN_KEY_BYTES} bytes, e.g. secrets.token_bytes(32) "
    "kept in a secret manager; the same key gives the same tokens across datasets",
    "boundaries": "pass a strictly increasing list of numbers, e.g. [0, 1000, 1000000]",
}
"""How to fix a missing or too weak required option."""

_UNITS = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))
"""Human units for generated bucket labels, largest first."""


class MaskError(BeamwrightError, ValueError):
    """A masking rule cannot be applied: bad options, unknown field or unsuitable column type.

    Messages name the option or field and say how to fix it; they never contain secrets.
    """


class HiddenOption:
    """A mask option's value (salt, key, ...) that must not appear in reprs, logs or errors.

    Not a :class:`connectors.secrets.Secret` (which refuses to be pickled): a mask rule built
    from literal options in plain Beam code travels to the workers with its values; only the
    text forms are hidden. Specs never hold literal salts or keys (they are secret references,
    resolved on the worker).
    """

    __slots__ = ("_value",)

    def __init__(self, value: object) -> None:
        self._value = value.reveal() if isinstance(value, HiddenOption) else value

    def reveal(self) -> object:
        """The wrapped value, for the code that actually uses it."""
        return self._value

    def __repr__(self) -> str:
        return "HiddenOption('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HiddenOption) and self._value == other._value


@dataclasses.dataclass(frozen=True)
class MaskRule:
    """How to mask one column of a pipeline's tables.

    ``field`` is a column name, or a dotted path to a field inside struct columns
    (``"customer.email"``); a column whose name itself contains dots is matched first.
    ``options`` are the strategy's options (see :func:`mask_array`). Values of ``salt`` and
    ``key`` and of any option name not known to be harmless are wrapped in :class:`HiddenOption`, so
    ``repr(rule)`` is safe to log. Options are validated by :func:`check_rule`, not here, so a
    spec validator can collect every problem at once.
    """

    field: str
    strategy: str
    options: Mapping[str, object] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.options, Mapping):
            raise MaskError(
                f"mask rule for {self.field!r}: options must be a mapping of option name to "
                f"value, got {type(self.options).__name__}"
            )
        hidden = {
            name: value if name in _PUBLIC_OPTIONS else HiddenOption(value)
            for name, value in self.options.items()
        }
        object.__setattr__(self, "options", hidden)


def check_rule(rule: MaskRule) -> None:
    """Raise :class:`MaskError` if ``rule`` can never be applied, whatever the data.

    Called when a spec is validated so that option mistakes surface before the pipeline runs.
    Column types are only known at run time; :func:`mask_table` checks them then.
    """
    _compile_rule(rule)


def mask_array(values: Values, strategy: str, **options: object) -> Values:
    """Mask a column with ``strategy``; a chunked input gives a chunked output of the same length.

    Options per strategy (defaults in brackets):

    * ``redact``: ``replacement`` [``"[REDACTED]"``].
    * ``partial``: ``keep_last`` [4], ``keep_first`` [0], ``mask_char`` [``"*"``, one
      character], ``keep_separators`` [``""``]. Characters are Unicode code points; the output
      has the input's length. Values no longer than ``keep_first + keep_last`` are masked
      entirely. Characters in ``keep_separators`` stay in place and are not counted, so
      ``"123-45-6789"`` with ``keep_separators="-"`` becomes ``"***-**-6789"`` (the workflow
      SDK's partial SSN); those values are masked once per distinct value, in Python.
    * ``hash``: ``salt`` (bytes or str, at least 8 bytes, required), ``algorithm``
      [``"sha256"``]. Hex digest of ``salt + value`` (UTF-8).
    * ``pseudonymize``: ``key`` (bytes or str, at least 16 bytes, required), ``length``
      [None: all 64 hex characters; else 16 to 64], ``prefix`` [""]. Hex HMAC-SHA256 of the
      value under ``key``, after ``prefix`` (the mask step's ``key_id``: the key version, so
      tokens made with different versions of a rotated key cannot be mistaken for each other).
    * ``bucket``: ``boundaries`` (strictly increasing finite numbers, required), ``labels``
      [generated], ``prefix`` [""], ``suffix`` [""]. Intervals include their lower bound:
      ``v < b[0]`` gets label 0, ``b[i-1] <= v < b[i]`` label ``i``, ``v >= b[-1]`` the last
      label. Generated labels read ``"<$1K"``, ``"$1K-$1M"``, ``"$1M+"`` with prefix ``"$"``.
      Explicit labels number ``len(boundaries) + 1`` and exclude prefix/suffix. NaN becomes
      null. Integers beyond 2**53 are compared as the nearest float.
    * ``email_domain``: ``mask`` [``"***"``]. ``"jane@example.com"`` -> ``"***@example.com"``;
      values without exactly one ``@`` become the mask alone, so nothing of them leaks.

    Raises :class:`MaskError` for bad options or a column type the strategy cannot mask.
    """
    return _apply(values, _compile(strategy, options), "values")


def mask_table(table: pa.Table, rules: Sequence[MaskRule]) -> pa.Table:
    """Apply ``rules`` in order, replacing each rule's column in place (same position and name).

    A nested field is replaced inside its struct, keeping the struct's nulls and other fields.
    Field nullability and metadata are kept; the type becomes that of the masked values.
    Every rule is checked before any column is touched. A rule naming a missing field raises
    :class:`MaskError` listing the fields that exist there.
    """
    compiled = [(rule.field, _compile_rule(rule)) for rule in rules]
    for rule_field, masker in compiled:
        table = _mask_columns(table, rule_field, masker)
    return table


# --- rule and option validation --------------------------------------------------------------


def _compile_rule(rule: MaskRule) -> _Masker:
    """Validate ``rule`` and return the function that masks its column."""
    if not isinstance(rule.field, str) or not rule.field:
        raise MaskError(f"mask rule field must be a non-empty column name, got {rule.field!r}")
    if rule.field in POSITION_COLUMNS:
        raise MaskError(
            f"mask rule field {rule.field!r} is a row-position column, which locates rejected "
            "rows in dead letters and holds no personal data; remove this rule"
        )
    try:
        return _compile(rule.strategy, rule.options)
    except MaskError as error:
        raise MaskError(f"mask rule for {rule.field!r}: {error}") from None


def _compile(strategy: object, options: Mapping[str, object]) -> _Masker:
    """Validate ``options`` for ``strategy`` and return the masking function they configure."""
    if not isinstance(strategy, str) or strategy not in _OPTIONS:
        raise MaskError(
            f"unknown masking strategy {strategy!r}; use one of {', '.join(STRATEGIES)}"
        )
    known = _OPTIONS[strategy]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MaskError(
            f"{strategy} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(known)}"
        )
    missing = [
        name for name, default in known.items() if default is _REQUIRED and name not in options
    ]
    if missing:
        raise MaskError(
            f"{strategy} option {missing[0]!r} is required: {_REQUIRED_HINTS[missing[0]]}"
        )
    settings = {**known, **options}
    return _COMPILERS[strategy](settings)


def _check_str(strategy: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        raise MaskError(f"{strategy} option {name!r} must be a string, got {value!r}")
    return value


def _check_count(strategy: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MaskError(
            f"{strategy} option {name!r} must be a whole number of characters >= 0, got {value!r}"
        )
    return value


def _secret_bytes(strategy: str, name: str, value: object, minimum: int) -> bytes:
    """The bytes of a salt or key; messages give its type and size, never its content."""
    raw = value.reveal() if isinstance(value, HiddenOption) else value
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MaskError(
            f"{strategy} option {name!r} must be bytes or str, got {type(raw).__name__}"
        )
    raw = bytes(raw)
    if len(raw) < minimum:
        raise MaskError(
            f"{strategy} option {name!r} must be at least {minimum} bytes, got {len(raw)}: "
            f"{_REQUIRED_HINTS[name]}"
        )
    return raw


def _compile_redact(settings: Mapping[str, object]) -> _Masker:
    replacement = pa.scalar(_check_str("redact", "replacement", settings["replacement"]))
    null = pa.scalar(None, pa.string())

    def redact(values: Values, where: str) -> Values:
        return pc.if_else(pc.is_valid(values), replacement, null)

    return redact


def _compile_partial(settings: Mapping[str, object]) -> _Masker:
    keep_first = _check_count("partial", "keep_first", settings["keep_first"])
    keep_last = _check_count("partial", "keep_last", settings["keep_last"])
    mask_char = _check_str("partial", "mask_char", settings["mask_char"])
    if len(mask_char) != 1:
        raise MaskError(
            f"partial option 'mask_char' must be exactly one character so masked values keep "
            f"their length, got {mask_char!r}"
        )
    kept = keep_first + keep_last
    separators = frozenset(_check_str("partial", "keep_separators", settings["keep_separators"]))
    if mask_char in separators:
        raise MaskError(
            f"partial option 'keep_separators' must not hold the mask_char {mask_char!r}: "
            "masked characters would read as kept ones"
        )

    def around_separators(value: str) -> str:
        body = [i for i, c in enumerate(value) if c not in separators]
        shown = set(body[:keep_first]) | set(body[len(body) - keep_last :] if keep_last else ())
        if len(body) <= kept:
            shown = set()
        return "".join(
            c if i in shown or c in separators else mask_char for i, c in enumerate(value)
        )

    def partial(values: Values, where: str) -> Values:
        text = _as_text(values, "partial", where)
        if separators:
            return _map_distinct(text, around_separators)
        length = pc.utf8_length(text)
        reveal = pc.greater(length, kept)
        stars = pc.binary_repeat(
            pa.scalar(mask_char, text.type), pc.if_else(reveal, pc.subtract(length, kept), length)
        )
        if kept == 0:
            return stars
        parts = []
        if keep_first:
            parts.append(pc.utf8_slice_codeunits(text, 0, keep_first))
        parts.append(stars)
        if keep_last:
            parts.append(pc.utf8_slice_codeunits(text, -keep_last))
        shown = pc.binary_join_element_wise(*parts, pa.scalar("", text.type))
        return pc.if_else(reveal, shown, stars)

    return partial


def _compile_hash(settings: Mapping[str, object]) -> _Masker:
    algorithm = settings["algorithm"]
    if algorithm not in _HASH_ALGORITHMS:
        raise MaskError(
            f"hash option 'algorithm' must be one of {', '.join(_HASH_ALGORITHMS)}, "
            f"got {algorithm!r}"
        )
    salted = hashlib.new(
        algorithm, _secret_bytes("hash", "salt", settings["salt"], _MIN_SALT_BYTES)
    )

    def digest(value: bytes) -> str:
        state = salted.copy()
        state.update(value)
        return state.hexdigest()

    def hash_(values: Values, where: str) -> Values:
        return _digest_distinct(_as_bytes(values, "hash", where), digest)

    return hash_


def _compile_pseudonymize(settings: Mapping[str, object]) -> _Masker:
    key = _secret_bytes("pseudonymize", "key", settings["key"], _MIN_KEY_BYTES)
    length = settings["length"]
    if length is not None and (
        isinstance(length, bool)
        or not isinstance(length, int)
        or not _MIN_TOKEN_CHARS <= length <= _SHA256_HEX_CHARS
    ):
        raise MaskError(
            f"pseudonymize option 'length' must be None or a number of hex characters from "
            f"{_MIN_TOKEN_CHARS} (shorter tokens collide) to {_SHA256_HEX_CHARS}, got {length!r}"
        )
    # HMAC (RFC 2104) with the padded-key states computed once: copying them per value is about
    # twice as fast as hmac.new() and gives the same digest.
    if len(key) > _HMAC_BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_HMAC_BLOCK_BYTES, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    chars = length or _SHA256_HEX_CHARS
    prefix = _check_str("pseudonymize", "prefix", settings["prefix"])

    def digest(value: bytes) -> str:
        state = inner.copy()
        state.update(value)
        result = outer.copy()
        result.update(state.digest())
        return prefix + result.hexdigest()[:chars]

    def pseudonymize(values: Values, where: str) -> Values:
        return _digest_distinct(_as_bytes(values, "pseudonymize", where), digest)

    return pseudonymize


def _compile_bucket(settings: Mapping[str, object]) -> _Masker:
    boundaries = settings["boundaries"]
    if (
        not isinstance(boundaries, Sequence)
        or isinstance(boundaries, str)
        or not boundaries
        or not all(_is_finite_number(b) for b in boundaries)
    ):
        raise MaskError(
            f"bucket option 'boundaries' must be a non-empty list of finite numbers, "
            f"got {boundaries!r}: {_REQUIRED_HINTS['boundaries']}"
        )
    for low, high in itertools.pairwise(boundaries):
        if not low < high:
            raise MaskError(
                f"bucket option 'boundaries' must be strictly increasing, but {high!r} follows "
                f"{low!r}; sort them and drop duplicates"
            )
    labels = settings["labels"]
    prefix = _check_str("bucket", "prefix", settings["prefix"])
    suffix = _check_str("bucket", "suffix", settings["suffix"])
    if labels is None:
        labels = _range_labels([float(b) for b in boundaries], prefix, suffix)
    else:
        labels = _check_labels(labels, len(boundaries) + 1, prefix, suffix)
    edges = np.asarray(boundaries, dtype=np.float64)
    names = pa.array(labels, pa.string())

    def bucket(values: Values, where: str) -> Values:
        def assign(array: pa.Array) -> pa.Array:
            numbers_ = _as_float(array, where).to_numpy(zero_copy_only=False)
            codes = np.searchsorted(edges, numbers_, side="right")
            return names.take(pa.array(codes, mask=np.isnan(numbers_)))

        return _whole(values, assign)

    return bucket


def _is_finite_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_labels(labels: object, count: int, prefix: str, suffix: str) -> list[str]:
    if prefix or suffix:
        raise MaskError(
            "bucket options 'prefix' and 'suffix' only apply to generated labels; with explicit "
            "'labels', write them into the labels"
        )
    if (
        not isinstance(labels, Sequence)
        or isinstance(labels, str)
        or not all(isinstance(label, str) for label in labels)
    ):
        raise MaskError(f"bucket option 'labels' must be a list of strings, got {labels!r}")
    if len(labels) != count:
        raise MaskError(
            f"bucket option 'labels' needs {count} labels (len(boundaries) + 1: below the first "
            f"boundary, one per interval, at or above the last), got {len(labels)}"
        )
    return list(labels)


def _range_labels(boundaries: list[float], prefix: str, suffix: str) -> list[str]:
    """``<b0``, ``b0-b1``, ..., ``bn+`` with numbers in human units (1K, 2.5M)."""
    shown = [_human(b, prefix, suffix) for b in boundaries]
    if len(set(shown)) != len(shown):
        raise MaskError(
            f"bucket option 'boundaries' {boundaries!r} are too close to label apart "
            f"({', '.join(shown)}); pass explicit 'labels'"
        )
    middle = [f"{low}-{high}" for low, high in itertools.pairwise(shown)]
    return [f"<{shown[0]}", *middle, f"{shown[-1]}+"]


def _human(number: float, prefix: str, suffix: str) -> str:
    """``-1500000`` with prefix ``$`` -> ``-$1.5M``."""
    sign = "-" if number < 0 else ""
    magnitude = abs(number)
    scale, unit = next(((s, u) for s, u in _UNITS if magnitude >= s), (1.0, ""))
    return f"{sign}{prefix}{magnitude / scale:.12g}{unit}{suffix}"


def _compile_email_domain(settings: Mapping[str, object]) -> _Masker:
    mask = _check_str("email_domain", "mask", settings["mask"])

    def email_domain(values: Values, where: str) -> Values:
        text = _as_text(values, "email_domain", where)
        masked = pa.scalar(mask, text.type)
        # one split on the literal '@' (no regex) gives both the domain and the '@' count;
        # a value without exactly one '@' is masked whole, so nothing malformed leaks
        parts = pc.split_pattern(text, "@")
        domain = pc.binary_join(pc.list_slice(parts, 1, 2), "")
        shown = pc.binary_join_element_wise(masked, domain, pa.scalar("@", text.type))
        return pc.if_else(pc.equal(pc.list_value_length(parts), 2), shown, masked)

    return email_domain


_COMPILERS: dict[str, Callable[[Mapping[str, object]], _Masker]] = {
    "redact": _compile_redact,
    "partial": _compile_partial,
    "hash": _compile_hash,
    "pseudonymize": _compile_pseudonymize,
    "bucket": _compile_bucket,
    "email_domain": _compile_email_domain,
}


# --- applying maskers ------------------------------------------------------------------------


def _apply(values: Values, masker: _Masker, where: str) -> Values:
    """Mask ``values``; for dictionary input, mask the dictionary once and keep the indices."""
    if not pa.types.is_dictionary(values.type):
        return _apply_plain(values, masker, where)
    if isinstance(values, pa.Array):
        return pa.DictionaryArray.from_arrays(
            values.indices, _apply_plain(values.dictionary, masker, where), safe=False
        )
    unified = values.unify_dictionaries()  # chunks may carry different dictionaries
    dictionary = (
        unified.chunk(0).dictionary if unified.num_chunks else pa.array([], values.type.value_type)
    )
    masked = _apply_plain(dictionary, masker, where)
    return pa.chunked_array(
        [pa.DictionaryArray.from_arrays(c.indices, masked, safe=False) for c in unified.chunks],
        pa.dictionary(values.type.index_type, masked.type),
    )


def _apply_plain(values: Values, masker: _Masker, where: str) -> Values:
    large = pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type)
    wanted = pa.large_string() if large else pa.string()
    # An all-null batch (e.g. from JSON) has type null whatever the strategy: nothing to mask.
    masked = pc.cast(values, wanted) if pa.types.is_null(values.type) else masker(values, where)
    return masked if masked.type == wanted else pc.cast(masked, wanted)


def _whole(values: Values, fn: Callable[[pa.Array], pa.Array]) -> Values:
    """Run ``fn`` on one contiguous array (numpy and per-value work need one)."""
    if isinstance(values, pa.ChunkedArray):
        return pa.chunked_array([fn(values.combine_chunks())])
    return fn(values)


def _digest_distinct(data: Values, digest: Callable[[bytes], str]) -> Values:
    """``digest`` of every value, computing it once per distinct value.

    Per-value Python hashing dominates the cost, and real columns repeat values (customers,
    emails), so the column is dictionary-encoded, the dictionary digested, and the digests
    taken back by index. Nulls stay null through the indices.
    """
    return _map_distinct(data, digest)


def _map_distinct(values: Values, fn: Callable[[bytes], str] | Callable[[str], str]) -> Values:
    """``fn`` of every value (text or bytes), computed once per distinct value, as a string
    column; nulls stay null."""

    def run(array: pa.Array) -> pa.Array:
        encoded = pc.dictionary_encode(array)
        mapped = pa.array([fn(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return mapped.take(encoded.indices)

    return _whole(values, run)


def _type_error(strategy: str, where: str, type_: pa.DataType, fix: str) -> MaskError:
    return MaskError(f"{strategy} cannot mask {where} of type {type_}: {fix}")


def _is_binary(type_: pa.DataType) -> bool:
    return (
        pa.types.is_binary(type_)
        or pa.types.is_large_binary(type_)
        or pa.types.is_fixed_size_binary(type_)
        or pa.types.is_binary_view(type_)
    )


def _as_text(values: Values, strategy: str, where: str) -> Values:
    """``values`` as string/large_string: numbers, booleans, dates... in their string form."""
    type_ = values.type
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return values
    if _is_binary(type_):
        raise _type_error(
            strategy,
            where,
            type_,
            "binary may not be valid UTF-8; decode it upstream, or use hash, pseudonymize, redact",
        )
    try:
        return pc.cast(values, pa.string())
    except pa.ArrowNotImplementedError:
        raise _type_error(
            strategy,
            where,
            type_,
            "it has no string form; name a struct field with a dotted path, or redact it",
        ) from None


def _as_bytes(values: Values, strategy: str, where: str) -> Values:
    """``values`` as binary for digesting: text as UTF-8, binary as is."""
    type_ = values.type
    if pa.types.is_large_binary(type_) or pa.types.is_binary(type_):
        return values
    if _is_binary(type_):
        return pc.cast(values, pa.binary())
    text = _as_text(values, strategy, where)
    return pc.cast(text, pa.large_binary() if pa.types.is_large_string(text.type) else pa.binary())


def _as_float(values: pa.Array, where: str) -> pa.Array:
    """``values`` as float64 for bucketing; only numeric columns qualify."""
    type_ = values.type
    if not (
        pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_decimal(type_)
    ):
        raise _type_error(
            "bucket",
            where,
            type_,
            "it needs numbers; cast the column to a number upstream, or use another strategy",
        )
    return pc.cast(values, pa.float64(), safe=False)  # unsafe: huge ints round instead of failing


# --- tables and struct paths -----------------------------------------------------------------


def _resolve(names: Sequence[str], path: str) -> tuple[str, str | None] | None:
    """Split ``path`` into the longest leading name in ``names`` and the rest (None if none)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        head = ".".join(parts[:end])
        if head in names:
            return head, ".".join(parts[end:]) or None
    return None


def _mask_columns(table: pa.Table, rule_field: str, masker: _Masker) -> pa.Table:
    names = table.column_names
    resolved = _resolve(names, rule_field)
    if resolved is None:
        visible = [n for n in names if n not in POSITION_COLUMNS]
        raise MaskError(
            f"mask rule field {rule_field!r} not found; available columns: {', '.join(visible)}"
        )
    head, rest = resolved
    for index, name in enumerate(names):
        if name != head:  # every column of that name is masked, so none leaks
            continue
        old = table.schema.field(index)
        new = _mask_value(table.column(index), rest, head, rule_field, masker)
        table = table.set_column(index, old.with_type(new.type), new)
    return table


def _mask_value(
    values: Values, rest: str | None, at: str, rule_field: str, masker: _Masker
) -> Values:
    """Mask ``values`` itself (``rest`` None) or the field ``rest`` inside it, a struct at ``at``."""
    if rest is None:
        return _apply(values, masker, f"field {rule_field!r}")
    if not pa.types.is_struct(values.type):
        raise MaskError(
            f"mask rule field {rule_field!r}: {at!r} has type {values.type}, not struct, so it "
            f"has no field {rest!r}; only struct fields can be addressed with dots"
        )
    if isinstance(values, pa.ChunkedArray):
        chunks = values.chunks or [pa.array([], values.type)]  # an empty array gives the type
        return pa.chunked_array([_mask_struct(c, rest, at, rule_field, masker) for c in chunks])
    return _mask_struct(values, rest, at, rule_field, masker)


def _mask_struct(
    struct: pa.StructArray, path: str, at: str, rule_field: str, masker: _Masker
) -> pa.StructArray:
    fields = list(struct.type)
    names = [f.name for f in fields]
    resolved = _resolve(names, path)
    if resolved is None:
        raise MaskError(
            f"mask rule field {rule_field!r} not found: struct {at!r} has no field {path!r}; "
            f"its fields: {', '.join(names)}"
        )
    head, rest = resolved
    children = [struct.field(i) for i in range(len(fields))]
    for index, name in enumerate(names):
        if name == head:
            children[index] = _mask_value(children[index], rest, f"{at}.{head}", rule_field, masker)
            fields[index] = fields[index].with_type(children[index].type)
    return pa.StructArray.from_arrays(
        children, fields=fields, mask=struct.is_null() if struct.null_count else None
    )
