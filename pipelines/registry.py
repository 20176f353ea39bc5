"""Spec ``type`` -> builder. Adding a source, step or sink kind is a model in
:mod:`pipelines.spec`, a builder in :mod:`pipelines.nodes`, and one line here."""

from __future__ import annotations

from pipelines import nodes

SOURCES = {"file": nodes.build_file_source, "kafka": nodes.build_kafka_source}

STEPS = {
    "validate": nodes.build_validate,
    "mask": nodes.build_mask,
    "map": nodes.build_map,
    "filter": nodes.build_filter,
    "lookup": nodes.build_lookup,
    "window": nodes.build_window,
    "batch": nodes.build_batch,
}

SINKS = {
    "file": nodes.build_file_sink,
    "report": nodes.build_report_sink,
    "kafka": nodes.build_kafka_sink,
}
