"""Field types for the validate step from a JSON Schema or an Avro schema file.

Both are turned into the same thing as inline ``fields``: name -> type name, plus the set of
required fields. Only the top-level properties are typed; nested objects are kept as they are.
"""

from __future__ import annotations

import json
from pathlib import Path

from connectors.errors import BeamwrightError

_JSON_TYPES = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}
_JSON_FORMATS = {"date": "date", "date-time": "timestamp"}


class SchemaFileError(BeamwrightError, ValueError):
    """A schema file is missing or not a schema we can read; the message says which and why."""


def _json_schema_fields(schema: dict, origin: str) -> tuple[dict[str, str], set[str]]:
    props = schema.get("properties")
    if not isinstance(props, dict):
        raise SchemaFileError(f"{origin}: a JSON Schema needs an object 'properties'")
    fields: dict[str, str] = {}
    for name, prop in props.items():
        kinds = prop.get("type", "string") if isinstance(prop, dict) else "string"
        kinds = [k for k in (kinds if isinstance(kinds, list) else [kinds]) if k != "null"]
        kind = kinds[0] if kinds else "string"
        fmt = prop.get("format") if isinstance(prop, dict) else None
        if kind == "string" and fmt in _JSON_FORMATS:
            fields[name] = _JSON_FORMATS[fmt]
        elif kind in _JSON_TYPES:
            fields[name] = _JSON_TYPES[kind]
        else:
            continue  # objects and arrays are checked by rules, not cast
    required = set(schema.get("required", [])) & set(fields)
    return fields, required


def _avro_fields(path: str) -> tuple[dict[str, str], set[str]]:
    from connectors.files.avro import avro_schema_to_arrow, load_avsc
    from transforms.coerce import ARROW_TYPES, type_name

    schema = avro_schema_to_arrow(load_avsc(path))
    fields = {}
    required = set()
    for field in schema:
        name = type_name(field.type)
        if name in ARROW_TYPES:
            fields[field.name] = name
            if not field.nullable:
                required.add(field.name)
    return fields, required


def load_field_types(path: str) -> tuple[dict[str, str], set[str]]:
    """(fields, required) from a ``.json`` JSON Schema or an ``.avsc`` Avro schema."""
    p = Path(path)
    if not p.is_file():
        raise SchemaFileError(f"schema file not found: {path}")
    if p.suffix == ".avsc":
        try:
            return _avro_fields(path)
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaFileError(f"{path}: not a valid Avro schema: {exc}") from None
    try:
        schema = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SchemaFileError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise SchemaFileError(f"{path}: a JSON Schema must be an object")
    return _json_schema_fields(schema, path)
