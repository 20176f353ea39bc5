"""The inputs and outputs of a run, as lineage and the run summary see them (plain data)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Dataset:
    """An input or output of the run: the node, its role, where it is, and its files.

    ``files`` are the input files a glob matched (known when the graph is built) or the files
    an output published (known after the run; empty when the run failed and published none).

    ``schema`` is set by kinds whose datasets are not files (a Kafka topic): called when
    lineage asks, it returns the dataset's Arrow schema (from an Avro schema file, a schema
    registry) or None, and never raises. Files have none: their schema is read from them.
    """

    node: str
    kind: str  # "source" | "sink" | "dead_letter" | "lookup" (a table a step reads by key)
    uri: str  # a directory, file, pattern or kafka://host:port/topic address
    format: str
    files: list[str] = field(default_factory=list)
    schema: Callable[[], Any] | None = None
