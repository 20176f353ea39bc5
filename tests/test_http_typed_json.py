"""The typed bulk decoder gives exactly what the general decoder plus JSON paths give, on
answers of every shape (missing keys, nulls, objects where values should be, values where
objects should be, extra keys, unicode), or hands the answer to the general path."""

from __future__ import annotations

import json
import random

import pytest

from connectors.http import jsonpath
from connectors.http.typed_json import BulkAnswer, bulk_decoder

pytest.importorskip("msgspec")

FIELDS = ["name", "address.city", "address.geo.lat", "score"]


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 2 else 6)
    return [
        None, rng.randrange(-5, 5), rng.random() * 1e6, "é" * rng.randrange(3) + "x", True,
        "", [1, "a"], {"city": "c"}, {"geo": {"lat": 1.5}, "city": None},
    ][kind]  # fmt: skip


def _item(rng: random.Random) -> object:
    if rng.random() < 0.03:
        return rng.choice(["not an object", 7, None, [1]])
    item: dict = {}
    for key in ("id", "name", "address", "score", "extra"):
        if rng.random() < 0.8:
            item[key] = _value(rng)
    if rng.random() < 0.5:
        item["address"] = {
            "city": _value(rng),
            "geo": {"lat": _value(rng)} if rng.random() < 0.7 else _value(rng),
        }
    return item


def _general(doc: object) -> dict:
    items = jsonpath.get(doc, jsonpath.parse("customers"))
    if not isinstance(items, list):
        return {"no list": True}
    get_id = jsonpath.getter(jsonpath.parse("id"))
    record = jsonpath.record_getter([jsonpath.parse(p) for p in FIELDS])
    return {get_id(i): record(i) for i in items if isinstance(get_id(i), (str, int, float))}


def _typed(decoded: object) -> dict:
    if not isinstance(decoded, BulkAnswer):
        return _general(decoded)
    return {i: row for i, row in zip(*decoded, strict=True) if isinstance(i, (str, int, float))}


def test_typed_decoding_equals_the_general_path_on_random_answers():
    decode = bulk_decoder(["customers"], ["id"], [jsonpath.parse(p) for p in FIELDS])
    assert decode is not None
    rng = random.Random(20261203)
    typed_answers = 0
    for _ in range(3000):
        items = [_item(rng) for _ in range(rng.randrange(6))]
        doc: object = {"customers": items, "page": 1}
        if rng.random() < 0.05:
            doc = rng.choice([{"customers": {"a": 1}}, {"other": []}, [], {"customers": None}])
        body = json.dumps(doc).encode()
        decoded = decode(body)
        typed_answers += isinstance(decoded, BulkAnswer)
        assert _typed(decoded) == _general(json.loads(body)), doc
    assert typed_answers > 1000  # most answers took the typed path


@pytest.mark.parametrize(
    "fields",
    [["tags[0]"], ["address", "address.city"]],
    ids=["index path", "a value and an object at one key"],
)
def test_paths_that_cannot_be_typed_keep_the_general_decoder(fields):
    assert bulk_decoder(["customers"], ["id"], [jsonpath.parse(p) for p in fields]) is None
