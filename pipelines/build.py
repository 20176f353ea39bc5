"""Spec -> Beam graph: sources, then steps in order, then sinks, with every dead-letter output
gathered into the dead-letter sink.

Wiring rules (the spec's documentation repeats them):
- a step reads its ``input`` (source or step names); by default the previous step, or for the
  first step every source that is not used as a lookup, flattened;
- a sink reads its ``input``; by default the last step (or the only source when there are
  no steps);
- every step's and source's dead letters go to ``dead_letter``: none is left unconsumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import apache_beam as beam

from pipelines import registry
from pipelines.nodes import BuildContext, Dataset, StagedOutput, build_dead_letter_sink
from pipelines.spec import (
    DEAD_LETTERS_INPUT,
    LookupStepSpec,
    PipelineSpec,
    ValidateStepSpec,
)

if TYPE_CHECKING:
    from connectors.originals import Origins


@dataclass
class BuiltPipeline:
    pipeline: beam.Pipeline
    inputs: list[Dataset]
    outputs: list[Dataset]
    node_order: list[tuple[str, str]]  # (kind, name) in the order they run
    kafka_commits: list[tuple[str, str, str, dict]]  # sources whose offsets pipelines.run commits
    committers: list[StagedOutput]  # outputs pipelines.run publishes once the run's checks pass


def _default_first_input(spec: PipelineSpec) -> list[str]:
    lookups = {st.lookup for st in spec.steps if isinstance(st, LookupStepSpec)}
    explicit = set()
    for st in spec.steps:
        if st.input:
            explicit.update([st.input] if isinstance(st.input, str) else st.input)
    main = [src.name for src in spec.sources if src.name not in lookups | explicit]
    return main or [spec.sources[0].name]


def classified_fields(spec: PipelineSpec) -> set[str]:
    """Fields the spec classifies above its default classification (e.g. PII)."""
    names = {f for f, c in spec.governance.fields.items() if c != spec.governance.classification}
    for step in spec.steps:
        if isinstance(step, ValidateStepSpec):
            names |= {n for n, f in step.fields.items() if f.classification}
    return names


def _origins(spec: PipelineSpec, ctx: BuildContext, rows_as_read: set[str]) -> Origins:
    """Where every source's records can be read again, so dead letters keep the original."""
    from connectors.originals import KafkaOrigin, Origins, file_origins
    from pipelines.nodes import kafka_config

    files, topics = {}, {}
    inputs = {dataset.node: dataset for dataset in ctx.inputs}
    for i, source in enumerate(spec.sources):
        if source.type == "file":
            files.update(file_origins(inputs[source.name].files, source.format, source.options))
        elif source.type == "kafka":
            config = kafka_config(source.consumer_config, f"sources[{i}].consumer_config")
            origin = KafkaOrigin(source.bootstrap_servers, config, source.value_format)
            names = [source.topics] if isinstance(source.topics, str) else source.topics
            topics.update(dict.fromkeys(names, origin))
    return Origins(files, topics, frozenset(rows_as_read))


def build_pipeline(spec: PipelineSpec, pipeline: beam.Pipeline, run_id: str) -> BuiltPipeline:
    """Add the spec's transforms to ``pipeline``. Raises SpecError before anything runs."""
    ctx = BuildContext(spec=spec, pipeline=pipeline, run_id=run_id)
    order: list[tuple[str, str]] = []
    for i, source in enumerate(spec.sources):
        registry.SOURCES[source.type](source, ctx, f"sources[{i}]")
        order.append(("source", source.name))
    previous: list[str] = _default_first_input(spec)
    rows_as_read: set[str] = set()  # steps reading sources directly: see connectors.originals
    for i, step in enumerate(spec.steps):
        names = [step.input] if isinstance(step.input, str) else (step.input or previous)
        if set(names) <= {source.name for source in spec.sources}:
            rows_as_read.add(step.name)
        rows = ctx.input_of(list(names), step.name)
        outputs = registry.STEPS[step.type](step, ctx, f"steps[{i}]", rows)
        ctx.outputs[step.name] = outputs.rows
        ctx.dead_letters.append(outputs.dead_letters)
        previous = [step.name]
        order.append(("step", step.name))
    # sinks fed by rows first: a sink that can reject (Kafka deliveries) adds dead letters
    later = []
    for i, sink in enumerate(spec.sinks):
        if sink.input == DEAD_LETTERS_INPUT:
            later.append((i, sink))
            continue
        rows = ctx.outputs[sink.input] if sink.input else ctx.input_of(previous, sink.name)
        registry.SINKS[sink.type](sink, ctx, f"sinks[{i}]", rows)
        order.append(("sink", sink.name))
    dead = tuple(ctx.dead_letters) | "DeadLetters/Union" >> beam.Flatten()
    from connectors.originals import RecoverOriginals

    dead = dead | "DeadLetters/Originals" >> RecoverOriginals(_origins(spec, ctx, rows_as_read))
    if spec.dead_letter.redact:
        from transforms.redact import RedactDeadLetters

        dead = dead | "DeadLetters/Redact" >> RedactDeadLetters(classified_fields(spec))
    ctx.outputs[DEAD_LETTERS_INPUT] = dead
    for i, sink in later:
        registry.SINKS[sink.type](sink, ctx, f"sinks[{i}]", dead)
        order.append(("sink", sink.name))
    build_dead_letter_sink(spec.dead_letter, ctx)
    order.append(("sink", DEAD_LETTERS_INPUT))
    return BuiltPipeline(
        pipeline, ctx.inputs, ctx.datasets_out, order, ctx.kafka_commits, ctx.committers
    )
