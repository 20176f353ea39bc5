"""Avro schemas given to the Kafka transforms: a dict, or the path of an ``.avsc`` file.

Both transforms load and check them when they are built, so that a schema Arrow cannot hold as
rows (not a record, a record containing itself) fails at pipeline construction, not on a
worker once data flows.
"""

from __future__ import annotations

from connectors.files.avroschema import avro_schema_to_arrow, load_avsc


def record_schema(avro_schema: dict | str) -> dict:
    """The Avro record schema ``avro_schema`` (or the one in that ``.avsc`` file), checked."""
    schema = load_avsc(avro_schema) if isinstance(avro_schema, str) else dict(avro_schema)
    avro_schema_to_arrow(schema)  # raises InvalidAvroSchema for anything rows cannot hold
    return schema
