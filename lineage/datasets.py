"""The inputs and outputs of a run, as lineage and the run summary see them (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Dataset:
    """An input or output of the run: the node, its role, where it is, and its files.

    ``files`` are the input files a glob matched (known when the graph is built) or the files
    an output published (known after the run; empty when the run failed and published none).
    """

    node: str
    kind: str  # "source" | "sink" | "dead_letter"
    uri: str  # a directory, file, pattern or kafka:// address
    format: str
    files: list[str] = field(default_factory=list)
