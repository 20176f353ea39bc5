"""Decode a bulk answer straight to the values a step needs, skipping everything else.

A bulk answer of 500 records is ~70 KB of JSON of which a step reads a few fields per record.
A general decoder (``json``, orjson) builds every dict, string and list of every record; the
step then walks those dicts by JSON path. With msgspec installed, a decoder is typed from the
step's paths instead (a Struct per object level, only the wanted keys, unknown keys skipped in
C) and the answer comes out as ``(ids, rows)``: measured here on 100,000 records of the local
API's shape, 0.32 s against 0.49 s for ``json.loads`` plus the path walk.

Only plain key paths can be typed (``a.b``; not ``tags[0]``), and a typed decode only succeeds
when the answer has the expected shape: a list where the items should be, objects where keys
are read. Anything else (no msgspec, index paths, an answer of another shape) returns None or
falls back to the general decoder, whose result the step handles as before, with the same
answers and the same errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from connectors.http.request import decode_json

Path = Sequence[str | int]


class BulkAnswer(NamedTuple):
    """A bulk answer as the step reads it: each record's id and its fields' values."""

    ids: list[Any]
    rows: list[tuple[Any, ...]]


def bulk_decoder(
    items: Path, item_id: Path, fields: Sequence[Path]
) -> Callable[[bytes], Any] | None:
    """A function decoding an answer's bytes to a :class:`BulkAnswer` (or, when the answer
    does not have the expected shape, to the general decoder's value); None when msgspec is
    not installed or a path is not made of keys only."""
    try:
        import msgspec
    except ImportError:
        return None
    paths = [list(items), list(item_id), *(list(p) for p in fields)]
    if not all(p and all(isinstance(step, str) for step in p) for p in paths):
        return None
    item_tree: dict[str, Any] = {}
    try:
        for path in paths[1:]:
            _insert(item_tree, path)
    except _Untypable:
        return None
    item_type, _ = _struct(msgspec, "Item", item_tree)
    root: dict[str, Any] = {}
    _insert(root, paths[0], leaf=list[item_type])  # type: ignore[valid-type]
    root_type, _ = _struct(msgspec, "Answer", root)
    decoder = msgspec.json.Decoder(root_type)
    get_items = _getter(_renamed(root, paths[0]))
    get_id = _getter(_renamed(item_tree, paths[1]))
    getters = [_getter(_renamed(item_tree, p)) for p in paths[2:]]

    def decode(body: bytes) -> Any:
        try:
            answer = decoder.decode(body)
        except msgspec.ValidationError:  # valid JSON of another shape: the general path
            return decode_json(body)
        records = get_items(answer)
        if records is None:  # no list there: the general path reports it as such
            return decode_json(body)
        return BulkAnswer(
            [get_id(r) for r in records], [tuple([g(r) for g in getters]) for r in records]
        )

    return decode


class _Untypable(Exception):
    """One path ends at a key another path goes through: a value and an object at once."""


def _insert(tree: dict[str, Any], path: list[str], leaf: Any = None) -> None:
    for key in path[:-1]:
        node = tree.setdefault(key, {})
        if not isinstance(node, dict):
            raise _Untypable(key)
        tree = node
    if isinstance(tree.get(path[-1]), dict):
        raise _Untypable(path[-1])
    tree.setdefault(path[-1], leaf)


def _struct(msgspec: Any, name: str, tree: dict[str, Any]) -> tuple[Any, dict[str, str]]:
    """A Struct type for one object level: attribute ``f<i>`` for JSON key ``tree``'s i-th key."""
    fields, rename = [], {}
    for i, (key, sub) in enumerate(tree.items()):
        attr = f"f{i}"
        rename[attr] = key
        if isinstance(sub, dict):
            kind = _struct(msgspec, f"{name}_{i}", sub)[0] | None
        else:
            kind = Any if sub is None else sub | None
        fields.append((attr, kind, None))
    return msgspec.defstruct(name, fields, rename=rename), rename


def _renamed(tree: dict[str, Any], path: list[str]) -> list[str]:
    """``path``'s keys as the Struct attributes ``_struct`` gave them."""
    out = []
    for key in path:
        out.append(f"f{list(tree).index(key)}")
        sub = tree[key]
        tree = sub if isinstance(sub, dict) else {}
    return out


def _getter(attrs: list[str]) -> Callable[[Any], Any]:
    if len(attrs) == 1:
        (a,) = attrs
        return lambda obj: getattr(obj, a)

    def get(obj: Any) -> Any:
        for a in attrs:
            if obj is None:
                return None
            obj = getattr(obj, a)
        return obj

    return get
