"""Counting rows per node: Beam counters for the run summary, a local tally for progress.

Every source, step and sink counts the same way, under namespace ``beamwright`` with names
``<node>/<what>`` (``rows_in``, ``rows_out``, ``rows_dead_lettered``, ``rows_filtered``,
``rows_written``, ``rows_emitted``, ``files``, ``bytes``, ``rule/<id>``); :mod:`pipelines.summary` reads them back
from the PipelineResult on any runner. Rule failures are also counted per source position
(``rule/<id>@<source>``, the file path or Kafka ``topic/partition`` the failing rows came from),
so lineage can give each input dataset its own data-quality results. This module sits in ``connectors`` because it is the
lowest layer every package may import.
"""

from __future__ import annotations

import threading
from typing import Any

METRIC_NAMESPACE = "beamwright"
ROWS_IN, ROWS_OUT, ROWS_DEAD, ROWS_FILTERED, ROWS_WRITTEN = (
    "rows_in",
    "rows_out",
    "rows_dead_lettered",
    "rows_filtered",
    "rows_written",
)
# what a step that combines rows (a join, a window's aggregates, top) passed on: its rows_out
# counts the input rows it used, so the rows its consumers receive are counted apart
ROWS_EMITTED = "rows_emitted"
FILES, BYTES = "files", "bytes"  # files read (sources) or published (sinks), bytes written
REFERENCE_VERSION = "reference_version:"  # + version id: rows a lookup joined with that version


def latest_reference_version(stats: dict[str, int]) -> str | None:
    """The newest reference version a refreshed lookup joined rows with, from its summary
    stats (version ids sort by age: see transforms.reference_refresh)."""
    versions = [
        k[len(REFERENCE_VERSION) :]
        for k, n in stats.items()
        if k.startswith(REFERENCE_VERSION) and n
    ]
    return max(versions) if versions else None


def metric_name(node: str, what: str) -> str:
    """Counter name for ``what`` (rows_in, rule/<id>, ...) of ``node``."""
    return f"{node}/{what}"


def rule_counter(rule: str, source: str | None = None) -> str:
    """The ``what`` of a rule's failure counter: ``rule/<id>``, or ``rule/<id>@<source>`` for
    the failures of rows read from ``source``. ``%`` and ``@`` in the id are percent-encoded
    so :func:`parse_rule_counter` can always split the two apart."""
    name = "rule/" + rule.replace("%", "%25").replace("@", "%40")
    return name if source is None else f"{name}@{source}"


def parse_rule_counter(what: str) -> tuple[str, str | None] | None:
    """``(rule id, source or None)`` for a :func:`rule_counter` name, else None."""
    if not what.startswith("rule/"):
        return None
    rule, at, source = what[len("rule/") :].partition("@")
    return rule.replace("%40", "@").replace("%25", "%"), (source if at else None)


class NodeCounters:
    """Beam counters of one node, created lazily once per DoFn instance; zero adds are free."""

    def __init__(self, node: str) -> None:
        self.node = node
        self._counters: dict[str, Any] = {}

    def inc(self, what: str, n: int = 1) -> None:
        if n:
            counter = self._counters.get(what)
            if counter is None:
                from apache_beam.metrics import Metrics  # imported by workers, not by the CLI

                counter = Metrics.counter(METRIC_NAMESPACE, metric_name(self.node, what))
                self._counters[what] = counter
            counter.inc(n)


class CountRows:
    """``beam.Map`` callable counting the rows of each batch as ``node``'s ``what``, for
    nodes that combine rows: what a combining step passes on (:data:`ROWS_EMITTED`), what a
    report sink receives (``rows_in``)."""

    def __init__(self, node: str, what: str) -> None:
        self._what = what
        self._counters = NodeCounters(node)

    def __call__(self, table: Any) -> Any:
        self._counters.inc(self._what, table.num_rows)
        return table


class LocalTally:
    """Rows seen per node in this process, for the live progress display.

    Beam metrics are only readable when a run ends; on the in-process runner this tally lets
    the CLI show progress while it runs. It is best-effort and never used for the summary.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, key: str, n: int) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


TALLY = LocalTally()
