"""File formats (JSONL, CSV, Parquet, Avro) as pure Arrow readers and writers.

Readers yield ``ReadChunk``s: up to ``batch_size`` rows carrying their source position, plus
``Reject``s for records that could not be decoded. Writers take tables and drop the position
columns. Nothing here imports Beam unless a remote (``scheme://``) path is opened.
"""

from connectors.files.avro import AvroFormat
from connectors.files.avroschema import arrow_schema_to_avro, avro_schema_to_arrow, load_avsc
from connectors.files.base import (
    CorruptFileError,
    FileFormat,
    FileWriter,
    ReadChunk,
    open_input,
    open_output,
)
from connectors.files.csvfile import CsvFormat
from connectors.files.jsonl import JsonlFormat
from connectors.files.parquet import ParquetFormat
from connectors.files.registry import FORMATS, infer_format, make_format

__all__ = [
    "FORMATS",
    "AvroFormat",
    "CorruptFileError",
    "CsvFormat",
    "FileFormat",
    "FileWriter",
    "JsonlFormat",
    "ParquetFormat",
    "ReadChunk",
    "arrow_schema_to_avro",
    "avro_schema_to_arrow",
    "infer_format",
    "load_avsc",
    "make_format",
    "open_input",
    "open_output",
]
