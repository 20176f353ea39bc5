"""A run's ``beamwright_syncReport`` facet (:mod:`lineage.sync_report`) from its spec and
summary: the ``reconcile`` step's decisions when the run has one (a two-way sync), else the
``records_api`` sinks' writes (a one-way sync to the API); None for other runs."""

from __future__ import annotations

from typing import Any


def sync_report_facet(spec: Any, summary: Any) -> Any:
    from lineage.sync_report import from_decisions, from_writes

    def stats(name: str) -> dict[str, int]:
        try:
            return summary.node(name).stats
        except KeyError:  # a node the run never counted (it failed first)
            return {}

    for step in spec.steps:
        if step.type == "reconcile":
            return from_decisions(stats(step.name), step.policy)
    for sink in spec.sinks:
        if sink.type == "records_api":
            return from_writes("api", stats(sink.name))
    return None
