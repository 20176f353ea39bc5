"""Avro schemas and Arrow schemas, both ways, and loading ``.avsc`` files.

Avro to Arrow (used to read Avro files and to take field types from a ``.avsc``):

- null, boolean, int, long, float, double, bytes, string -> the matching Arrow type;
  fixed -> fixed_size_binary, enum -> string, uuid -> string;
- ``["null", T]`` -> a nullable field of T; a field that is not a union is not nullable;
- a union of several non-null types -> string: such values are read as JSON text, the way
  mixed-kind JSON columns are, so the validation step can coerce them;
- record -> struct, array -> list, map -> map<string, T>;
- logical types: timestamp-millis/micros -> timestamp(ms/us, UTC), local-timestamp-millis/
  micros -> timestamp without zone, date -> date32, time-millis -> time32(ms), time-micros ->
  time64(us), decimal -> decimal128 (decimal256 beyond 38 digits).

Arrow to Avro (used when writing without an explicit Avro schema): int8..int32 and uint8/16 ->
int; int64 and uint32/64 -> long; float16/32 -> float; float64 -> double; string -> string;
bool -> boolean; binary -> bytes; fixed_size_binary -> fixed; timestamp with a zone -> long
timestamp-micros, without -> long local-timestamp-micros (so naive values stay naive); date ->
int date; time -> time-millis or time-micros; decimal -> bytes decimal; struct -> record; lists
-> array; map with string keys -> map; dictionary -> its values' type; null -> null. Nullable
fields become ``["null", T]`` with default null.
"""

from __future__ import annotations

import json
from typing import Any

import fastavro
import pyarrow as pa

from connectors.errors import BeamwrightError
from connectors.files.base import open_input

AvroType = Any  # a type in Avro's JSON form: a name, a dict or a list (union)

_PRIMITIVES = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
# Logical types by "<base type>-<logical type>", as fastavro applies them: a logical type on
# another base type is ignored, by fastavro and here.
_LOGICAL = {
    "long-timestamp-millis": pa.timestamp("ms", tz="UTC"),
    "long-timestamp-micros": pa.timestamp("us", tz="UTC"),
    "long-local-timestamp-millis": pa.timestamp("ms"),
    "long-local-timestamp-micros": pa.timestamp("us"),
    "int-date": pa.date32(),
    "int-time-millis": pa.time32("ms"),
    "long-time-micros": pa.time64("us"),
    "string-uuid": pa.string(),
}
_DECIMAL_BASES = ("bytes", "fixed")
_MAX_DECIMAL128_DIGITS = 38
_UNION_TEXT = pa.string()


class InvalidAvroSchema(BeamwrightError, ValueError):
    """An Avro schema that is malformed or that Arrow cannot represent."""


def load_avsc(path: str) -> dict:
    """The Avro schema in the ``.avsc`` file at ``path``, checked by fastavro."""
    with open_input(path) as stream:
        data = stream.read()
    try:
        schema = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidAvroSchema(f"{path} is not a JSON file: {exc}") from exc
    if not isinstance(schema, dict):
        raise InvalidAvroSchema(f"{path} does not hold an Avro record schema (a JSON object)")
    try:
        fastavro.parse_schema(schema)
    except Exception as exc:  # fastavro raises several unrelated types for bad schemas
        raise InvalidAvroSchema(f"{path} is not a valid Avro schema: {exc}") from exc
    return schema


def avro_schema_to_arrow(avsc: dict) -> pa.Schema:
    """The Arrow schema for records of the Avro record schema ``avsc``."""
    if not isinstance(avsc, dict) or avsc.get("type") != "record":
        raise InvalidAvroSchema("an Avro schema for rows must be a record")
    struct = _AvroToArrow().convert(avsc)
    return pa.schema(list(struct))


def short_name(name: str) -> str:
    """A named type's name without its namespace: references may use either form."""
    return name.rsplit(".", 1)[-1]


def is_multi_union(avro_type: AvroType) -> bool:
    """True for a union of several non-null types, which Arrow reads as JSON text."""
    return isinstance(avro_type, list) and len([t for t in avro_type if t != "null"]) > 1


class _AvroToArrow:
    """One conversion: remembers named types, which later parts of a schema refer to by name."""

    def __init__(self) -> None:
        self._named: dict[str, pa.DataType] = {}
        self._in_progress: set[str] = set()

    def convert(self, avro_type: AvroType) -> pa.DataType:
        if isinstance(avro_type, list):
            branches = [t for t in avro_type if t != "null"]
            return self.convert(branches[0]) if len(branches) == 1 else _UNION_TEXT
        if isinstance(avro_type, str):
            return self._by_name(avro_type)
        if not isinstance(avro_type, dict):
            raise InvalidAvroSchema(f"not an Avro type: {avro_type!r}")
        kind, logical = avro_type.get("type"), avro_type.get("logicalType")
        if logical == "decimal" and kind in _DECIMAL_BASES:
            precision = avro_type["precision"]
            decimal = pa.decimal128 if precision <= _MAX_DECIMAL128_DIGITS else pa.decimal256
            return self._remember(avro_type, decimal(precision, avro_type.get("scale", 0)))
        if f"{kind}-{logical}" in _LOGICAL:
            return _LOGICAL[f"{kind}-{logical}"]
        if kind == "record":
            return self._record(avro_type)
        if kind == "enum":
            return self._remember(avro_type, pa.string())
        if kind == "fixed":
            return self._remember(avro_type, pa.binary(avro_type["size"]))
        if kind == "array":
            return pa.list_(self._field("item", avro_type["items"]))
        if kind == "map":
            return pa.map_(pa.string(), self._field("value", avro_type["values"]))
        return self.convert(kind)  # {"type": "long"} and the like

    def _by_name(self, name: str) -> pa.DataType:
        if name in _PRIMITIVES:
            return _PRIMITIVES[name]
        if short_name(name) in self._in_progress:
            raise InvalidAvroSchema(f"record {name} contains itself, which Arrow cannot hold")
        if short_name(name) in self._named:
            return self._named[short_name(name)]
        raise InvalidAvroSchema(f"unknown Avro type {name!r}")

    def _record(self, record: dict) -> pa.DataType:
        name = short_name(record["name"])
        self._in_progress.add(name)
        fields = [self._field(f["name"], f["type"]) for f in record["fields"]]
        self._in_progress.discard(name)
        return self._remember(record, pa.struct(fields))

    def _field(self, name: str, avro_type: AvroType) -> pa.Field:
        nullable = isinstance(avro_type, list) and "null" in avro_type
        return pa.field(name, self.convert(avro_type), nullable=nullable or _is_null(avro_type))

    def _remember(self, named: dict, arrow_type: pa.DataType) -> pa.DataType:
        if "name" in named:  # records, enums and fixed are named; a bytes decimal is not
            self._named[short_name(named["name"])] = arrow_type
        return arrow_type


def _is_null(avro_type: AvroType) -> bool:
    return avro_type == "null" or (isinstance(avro_type, dict) and avro_type.get("type") == "null")


def arrow_schema_to_avro(schema: pa.Schema, name: str = "Record") -> dict:
    """An Avro record schema named ``name`` for rows with Arrow schema ``schema``."""
    return _record(name, list(schema))


def _record(name: str, fields: list[pa.Field]) -> dict:
    return {
        "type": "record",
        "name": name,
        "fields": [_avro_field(f, f"{name}_{f.name}") for f in fields],
    }


def _avro_field(field: pa.Field, path: str) -> dict:
    avro_type = _avro_type(field.type, path, field.name)
    if field.nullable and avro_type != "null":
        return {"name": field.name, "type": ["null", avro_type], "default": None}
    return {"name": field.name, "type": avro_type}


def _avro_type(kind: pa.DataType, path: str, column: str) -> AvroType:
    """The Avro type for Arrow type ``kind``; ``path`` names nested records uniquely."""
    t = pa.types
    if t.is_dictionary(kind):
        return _avro_type(kind.value_type, path, column)
    if t.is_null(kind):
        return "null"
    if t.is_boolean(kind):
        return "boolean"
    if t.is_int8(kind) or t.is_int16(kind) or t.is_int32(kind):
        return "int"
    if t.is_uint8(kind) or t.is_uint16(kind):
        return "int"
    if t.is_integer(kind):
        return "long"
    if t.is_float16(kind) or t.is_float32(kind):
        return "float"
    if t.is_float64(kind):
        return "double"
    if t.is_string(kind) or t.is_large_string(kind) or t.is_string_view(kind):
        return "string"
    if t.is_binary(kind) or t.is_large_binary(kind) or t.is_binary_view(kind):
        return "bytes"
    if t.is_fixed_size_binary(kind):
        return {"type": "fixed", "name": f"{path}_fixed", "size": kind.byte_width}
    if t.is_timestamp(kind):
        logical = "timestamp-micros" if kind.tz else "local-timestamp-micros"
        return {"type": "long", "logicalType": logical}
    if t.is_date(kind):
        return {"type": "int", "logicalType": "date"}
    if t.is_time32(kind):
        return {"type": "int", "logicalType": "time-millis"}
    if t.is_time64(kind):
        return {"type": "long", "logicalType": "time-micros"}
    if t.is_decimal(kind):
        return {
            "type": "bytes",
            "logicalType": "decimal",
            "precision": kind.precision,
            "scale": kind.scale,
        }
    if t.is_struct(kind):
        return _record(path, [kind.field(i) for i in range(kind.num_fields)])
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        item = _avro_field(kind.value_field, f"{path}_item")["type"]
        return {"type": "array", "items": item}
    if t.is_map(kind):
        if not (t.is_string(kind.key_type) or t.is_large_string(kind.key_type)):
            raise ValueError(f"column {column}: Avro maps need string keys, not {kind.key_type}")
        value = _avro_field(kind.item_field, f"{path}_value")["type"]
        return {"type": "map", "values": value}
    raise ValueError(f"column {column}: Arrow type {kind} has no Avro equivalent")


def avro_compatible(schema: pa.Schema) -> pa.Schema:
    """``schema`` with types fastavro takes from Python values: nanoseconds become micros."""
    return pa.schema([f.with_type(_compatible(f.type)) for f in schema])


def _compatible(kind: pa.DataType) -> pa.DataType:
    t = pa.types
    if t.is_timestamp(kind) and kind.unit == "ns":
        return pa.timestamp("us", kind.tz)
    if t.is_time64(kind) and kind.unit == "ns":
        return pa.time64("us")
    if t.is_float16(kind):
        return pa.float32()
    if t.is_dictionary(kind):
        return _compatible(kind.value_type)
    if t.is_struct(kind):
        return pa.struct(
            [
                kind.field(i).with_type(_compatible(kind.field(i).type))
                for i in range(kind.num_fields)
            ]
        )
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        return pa.list_(kind.value_field.with_type(_compatible(kind.value_type)))
    if t.is_map(kind):
        return pa.map_(kind.key_field, kind.item_field.with_type(_compatible(kind.item_type)))
    return kind
