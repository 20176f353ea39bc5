"""The file formats by name, and the format a path's extension implies."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from connectors.files.alphavantage import AlphaVantageFormat
from connectors.files.avro import AvroFormat
from connectors.files.base import FileFormat
from connectors.files.bloomberg import BloombergFormat
from connectors.files.csvfile import CsvFormat
from connectors.files.jsonl import JsonlFormat
from connectors.files.parquet import ParquetFormat
from connectors.files.yahoo import YahooCsvFormat

FORMATS: dict[str, type] = {
    fmt.name: fmt for fmt in (JsonlFormat, CsvFormat, ParquetFormat, AvroFormat)
}
INPUT_FORMATS: dict[str, type] = {
    fmt.name: fmt for fmt in (YahooCsvFormat, AlphaVantageFormat, BloombergFormat)
}
"""Market-data provider formats: read only, and named explicitly (never inferred)."""


def make_format(name: str, **options: object) -> FileFormat:
    """The format called ``name`` configured with ``options``.

    Unknown names and options raise ``ValueError`` listing the valid ones, so that a typo in a
    pipeline spec fails when the pipeline is built rather than when a file is read.
    """
    known = FORMATS | INPUT_FORMATS
    if name not in known:
        raise ValueError(f"unknown file format {name!r}; valid formats: {', '.join(known)}")
    fmt = known[name]
    valid = [f.name for f in dataclasses.fields(fmt)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        accepted = ", ".join(valid) if valid else "none"
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for file format {name!r};"
            f" valid options: {accepted}"
        )
    return fmt(**options)


def infer_format(path: str) -> str:
    """The format name for ``path``'s extension (case-insensitive)."""
    lowered = path.lower()
    for name, fmt in FORMATS.items():
        if lowered.endswith(fmt.extensions):
            return name
    known = ", ".join(ext for fmt in FORMATS.values() for ext in fmt.extensions)
    raise ValueError(f"cannot tell the file format of {path!r}; known extensions: {known}")


def head_schema(path: str, fmt: str, options: dict[str, Any] | None = None, rows: int = 1) -> Any:
    """The Arrow schema of a file's first batch of ``rows`` rows (position columns dropped),
    or None when it cannot be read (empty, corrupt, unreadable: building the source reports
    those). For JSONL the schema is that batch's: read with the run's batch size, it is the
    schema the run's first batch of the file will have."""
    from connectors.records import strip_positions

    try:
        chunks = make_format(fmt, **(options or {})).read(path, rows)
        with contextlib.closing(chunks):
            for chunk in chunks:
                return strip_positions(chunk.rows).schema
    except Exception:  # noqa: BLE001 - any failure only means "schema unknown" here
        return None
    return None
