"""Terminal output: a live progress line while a run goes, and the summary table at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from pipelines.summary import RunSummary


def _n(value: int) -> str:
    return f"{value:,}"


def render_summary(summary: RunSummary, console: Console) -> None:
    if summary.status == "TRANSLATED":
        console.print(
            f"{summary.pipeline} · [green]{summary.translation}[/green] · job graph written to "
            f"{summary.job_graph} (a dry run: nothing ran, no output was touched)"
        )
        return
    colour = "green" if summary.status == "COMPLETE" else "red"
    table = Table(
        title=f"{summary.pipeline} · run {summary.run_id} · [{colour}]{summary.status}[/{colour}]",
        title_justify="left",
    )
    if summary.partial_counts:
        _seen_so_far(summary, table)
    else:
        _counts(summary, table)
    console.print(table)
    console.print(
        f"rows read {_n(summary.rows_read)} · dead-lettered {_n(summary.rows_dead_lettered)} "
        f"({summary.rejected_fraction:.2%}, threshold {summary.error_threshold:.2%}) · "
        f"filtered {_n(summary.rows_filtered)} · {summary.elapsed_seconds:.2f} s · "
        f"{summary.rows_per_second:,.0f} rows/s"
    )
    for node in summary.nodes:  # other counters: an http step's requests, retries, cache...
        counts = [
            f"{k.replace('_', ' ')} {_n(v)}"
            for k, v in node.stats.items()
            if v and not k.endswith("_ms")
        ]
        if counts:
            console.print(f"  {node.name:>14}: {' · '.join(counts)}")
    for entry in summary.data_quality:  # table-level expectations, judged on the whole input
        from pipelines.dataset_expectations import describe

        verdict = "[green]passed[/green]" if entry["success"] else "[red]failed[/red]"
        console.print(f"  {entry['step']:>14}: {verdict} ({entry['severity']}) {describe(entry)}")
    if summary.data_quality_result:
        console.print(f"  {'GX result':>14}: {summary.data_quality_result}")
    for dataset in summary.outputs:
        label = "dead letters" if dataset.kind == "dead_letter" else dataset.node
        console.print(f"  {label:>14}: {_where(summary, dataset)}")
    if summary.lineage:
        where = summary.lineage_log or "configured OpenLineage transport"
        stats = summary.lineage
        console.print(
            f"  {'lineage':>14}: {where} ({stats.get('sent', 0)} event(s) sent, "
            f"{stats.get('failed', 0)} failed, {stats.get('dropped', 0)} dropped)"
        )
    for warning in summary.lineage.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning['message']}")
    if summary.error:
        console.print(f"[red]error:[/red] {summary.error}")


def _where(summary: RunSummary, dataset: Any) -> str:
    """An output's path, and for a failed run what became of it."""
    if summary.published or dataset.uri.startswith("kafka://"):
        return dataset.uri
    if dataset.kind == "dead_letter" and summary.failed_dead_letters:
        return f"{summary.failed_dead_letters} (this failed run's dead letters)"
    return f"{dataset.uri} (not published: the previous output is unchanged)"


def _counts(summary: RunSummary, table: Table) -> None:
    for column, justify in (
        ("node", "left"),
        ("kind", "left"),
        ("rows in", "right"),
        ("rows out", "right"),
        ("dead-lettered", "right"),
        ("filtered", "right"),
        ("files", "right"),
        ("ok", "center"),
    ):
        table.add_column(column, justify=justify)
    for node in summary.nodes:
        table.add_row(
            node.name,
            node.kind,
            _n(node.rows_in),
            _n(node.rows_out),
            _n(node.rows_dead_lettered) if node.kind != "sink" or node.rows_dead_lettered else "",
            _n(node.rows_filtered) if node.kind == "step" else "",
            _n(node.files) if node.files else "",
            "✓" if summary.node_ok(node) else "[red]✗[/red]",
        )


def _seen_so_far(summary: RunSummary, table: Table) -> None:
    """A run that raised has no final counts, only how far rows got before it stopped."""
    table.add_column("node", justify="left")
    table.add_column("kind", justify="left")
    table.add_column("rows seen before the failure", justify="right")
    for node in summary.nodes:
        if node.kind != "sink":
            table.add_row(node.name, node.kind, _n(node.rows_in))


class LiveProgress:
    """A one-line progress display fed by :class:`pipelines.run.ProgressPoller` ticks."""

    def __init__(self, console: Console, nodes: list[str]) -> None:
        self._console = console
        self._nodes = nodes
        self._status: Any = None
        self._t0 = time.perf_counter()

    def __enter__(self) -> LiveProgress:
        self._status = self._console.status("starting pipeline…", spinner="dots")
        self._status.__enter__()
        return self

    def update(self, tally: dict[str, int]) -> None:
        elapsed = time.perf_counter() - self._t0
        parts = [f"{name} {_n(tally[name])}" for name in self._nodes if name in tally]
        text = " → ".join(parts) if parts else "starting workers…"
        self._status.update(f"[bold]running[/bold] {elapsed:5.1f}s  {text}")

    def __exit__(self, *exc: object) -> None:
        self._status.__exit__(*exc)
