"""The run summary: rows per node, reconciliation, throughput, where everything went.

Built from the run's Beam counters (so it is the same on every runner), printed as a table by
the CLI and written as JSON with ``--summary-json`` for scripts and CI.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from connectors.metrics import (
    BYTES,
    FILES,
    ROWS_DEAD,
    ROWS_EMITTED,
    ROWS_FILTERED,
    ROWS_IN,
    ROWS_OUT,
    ROWS_WRITTEN,
    metric_name,
    parse_rule_counter,
)
from lineage.datasets import Dataset


@dataclass
class NodeCounts:
    kind: str  # source | step | sink
    name: str
    rows_in: int = 0
    rows_out: int = 0
    rows_dead_lettered: int = 0
    rows_filtered: int = 0
    rows_emitted: int = 0  # a combining step's rows passed on (its rows_out: input rows used)
    files: int = 0
    bytes: int = 0
    rules: dict[str, int] = field(default_factory=dict)
    # source (file path, Kafka topic/partition) -> rule id -> failures of rows read from it
    rules_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    # the node's other counters: an http step's requests, retries, cache hits, breaker opens...
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def reconciled(self) -> bool:
        return self.rows_in == self.rows_out + self.rows_dead_lettered + self.rows_filtered

    def add(self, other: NodeCounts) -> None:
        """Add another cycle's counts of the same node (``--follow`` totals)."""
        for name in (
            "rows_in",
            "rows_out",
            "rows_dead_lettered",
            "rows_filtered",
            "rows_emitted",
            "files",
            "bytes",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        _add_rules(self.rules, other.rules)
        _add_rules(self.stats, other.stats)
        for source, rules in other.rules_by_source.items():
            _add_rules(self.rules_by_source.setdefault(source, {}), rules)


@dataclass
class EdgeCount:
    """The rows ``consumer`` received against the rows its main inputs emitted (every
    producer's ``rows_out`` goes whole to each of its consumers: a fan-out copies)."""

    consumer: str
    producers: list[str]
    sent: int
    received: int

    @property
    def reconciled(self) -> bool:
        return self.sent == self.received


def _add_rules(into: dict[str, int], more: dict[str, int]) -> None:
    for rule, n in more.items():
        into[rule] = into.get(rule, 0) + n


@dataclass
class RunSummary:
    run_id: str
    pipeline: str
    template: str | None
    runner: str
    status: str  # COMPLETE | FAILED | ABORTED | TRANSLATED (a dry run: nothing ran)
    started_at: str
    elapsed_seconds: float
    nodes: list[NodeCounts]
    inputs: list[Dataset]
    outputs: list[Dataset]
    error: str | None = None
    error_threshold: float = 0.0
    lineage: dict[str, Any] = field(default_factory=dict)
    partial_counts: bool = False  # the pipeline raised: nodes hold only the rows seen so far
    published: bool = False  # outputs were published (only after every check passed)
    failed_dead_letters: str | None = None  # where a failed run's dead letters were kept
    job_graph: str | None = None  # TRANSLATED (a dry run): where the job graph was written
    translation: str | None = None  # TRANSLATED: steps, batch/streaming, placeholders used
    # table-level expectations judged on the whole input (pipelines.dataset_expectations)
    data_quality: list[dict[str, Any]] = field(default_factory=list)
    data_quality_result: str | None = None  # where their GX-compatible result JSON went
    # (producer, consumer) of every edge rows travel on (pipelines.spec.row_edges)
    edges: list[tuple[str, str]] = field(default_factory=list)
    # steps whose rows_out counts input rows; their consumers receive rows_emitted
    combining: list[str] = field(default_factory=list)

    @property
    def lineage_log(self) -> str | None:
        return self.lineage.get("event_log")

    @property
    def rows_read(self) -> int:
        return sum(n.rows_in for n in self.nodes if n.kind == "source")

    @property
    def rows_dead_lettered(self) -> int:
        return sum(n.rows_dead_lettered for n in self.nodes)

    @property
    def rows_filtered(self) -> int:
        return sum(n.rows_filtered for n in self.nodes if n.kind == "step")

    @property
    def rejected_fraction(self) -> float:
        return self.rows_dead_lettered / self.rows_read if self.rows_read else 0.0

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def edge_counts(self) -> list[EdgeCount]:
        """Per consumer, what its producers emitted against what it received: the check
        between nodes, so rows dropped on the way (or counted nowhere) show as a failure."""
        counts = {n.name: n for n in self.nodes}
        sent = {
            n.name: n.rows_emitted if n.name in self.combining else n.rows_out for n in self.nodes
        }
        producers: dict[str, list[str]] = {}
        for producer, consumer in self.edges:
            if producer in counts and consumer in counts:
                producers.setdefault(consumer, []).append(producer)
        return [
            EdgeCount(c, ps, sum(sent[p] for p in ps), counts[c].rows_in)
            for c, ps in producers.items()
        ]

    def unreconciled(self) -> list[str]:
        """What does not add up, one line each: nodes whose rows in != out + dead-lettered
        + filtered, and consumers that received other than their inputs emitted."""
        problems = [
            f"{n.name} (rows in {n.rows_in} != out {n.rows_out} + dead-lettered "
            f"{n.rows_dead_lettered} + filtered {n.rows_filtered})"
            for n in self.nodes
            if not self._inside_ok(n)
        ]
        problems += [
            f"{e.consumer} (received {e.received} rows, {', '.join(e.producers)} emitted {e.sent})"
            for e in self.edge_counts()
            if not e.reconciled
        ]
        return problems

    def node_ok(self, node: NodeCounts) -> bool:
        """The node reconciles and received all that its inputs emitted."""
        return self._inside_ok(node) and all(
            e.reconciled for e in self.edge_counts() if e.consumer == node.name
        )

    def _inside_ok(self, node: NodeCounts) -> bool:
        """The node's own check; a sink writing aggregates (a report) writes fewer rows than
        it received, so only the check between nodes applies to it."""
        return node.reconciled or (node.kind == "sink" and node.name in self.combining)

    @property
    def reconciled(self) -> bool:
        return not self.unreconciled()

    def node(self, name: str) -> NodeCounts:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for n, counts in zip(data["nodes"], self.nodes, strict=True):
            n["reconciled"] = counts.reconciled
        data["edges"] = [{**asdict(e), "reconciled": e.reconciled} for e in self.edge_counts()]
        for dataset in data["inputs"] + data["outputs"]:
            dataset.pop("schema", None)  # a callable (Kafka topics, PostgreSQL tables), not data
        data.update(
            rows_read=self.rows_read,
            rows_dead_lettered=self.rows_dead_lettered,
            rows_filtered=self.rows_filtered,
            rejected_fraction=round(self.rejected_fraction, 6),
            rows_per_second=round(self.rows_per_second, 1),
            reconciled=self.reconciled,
        )
        return data

    def write_json(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")


_ROW_COUNTS = {
    ROWS_IN,
    ROWS_OUT,
    ROWS_DEAD,
    ROWS_FILTERED,
    ROWS_WRITTEN,
    ROWS_EMITTED,
    FILES,
    BYTES,
}


def counts_from_metrics(counters: dict[str, int], order: list[tuple[str, str]]) -> list[NodeCounts]:
    """Per-node counts from ``{"<node>/<what>": value}`` Beam counters."""
    nodes = []
    for kind, name in order:
        get = lambda what, name=name: counters.get(metric_name(name, what), 0)  # noqa: E731
        node = NodeCounts(kind=kind, name=name)
        if kind == "sink":
            node.rows_out = get(ROWS_WRITTEN)
            node.rows_dead_lettered = get(ROWS_DEAD)
            node.rows_in = get(ROWS_IN) or node.rows_out + node.rows_dead_lettered
            node.files, node.bytes = get(FILES), get(BYTES)
            for key, value in counters.items():  # a sink's own counts (postgres: created)
                node_name, _, what = key.partition("/")
                if node_name == name and what not in _ROW_COUNTS:
                    node.stats[what] = value
        else:
            node.rows_in, node.rows_out = get(ROWS_IN), get(ROWS_OUT)
            node.rows_dead_lettered = get(ROWS_DEAD)
            node.rows_filtered = get(ROWS_FILTERED)
            node.rows_emitted = get(ROWS_EMITTED)
            if kind == "source":
                node.files = get(FILES)
            for key, value in counters.items():
                node_name, _, what = key.partition("/")
                if node_name != name:
                    continue
                parsed = parse_rule_counter(what)
                if parsed is None:
                    if what not in _ROW_COUNTS:
                        node.stats[what] = value
                    continue
                rule, source = parsed
                if source is None:
                    node.rules[rule] = value
                else:
                    node.rules_by_source.setdefault(source, {})[rule] = value
        nodes.append(node)
    return nodes


def counts_seen(tally: dict[str, int], order: list[tuple[str, str]]) -> list[NodeCounts]:
    """What a run that raised had seen: rows that reached each node so far (progress tally).

    Only ``rows_in`` is known; a failed run's nodes are not expected to reconcile.
    """
    return [NodeCounts(kind=kind, name=name, rows_in=tally.get(name, 0)) for kind, name in order]
