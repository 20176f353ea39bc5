"""Spec -> Beam graph: sources, then steps in order, then sinks, with every dead-letter output
gathered into the dead-letter sink.

Each node is built by its kind's ``build`` (:mod:`pipelines.registry`), in the order and with
the inputs of the wiring rules (:func:`pipelines.spec.step_inputs`); every step's and
source's dead letters go to ``dead_letter``, so none is left unconsumed. Builders check what
can be checked before the pipeline starts (files exist, schema files and expectation suites
parse, expressions compile, secrets resolve, outputs may be written) and raise
:class:`SpecError` naming the spec path and the fix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindows

from connectors.metrics import ROWS_EMITTED, CountRows
from lineage.datasets import Dataset
from pipelines import registry
from pipelines import spec as s
from pipelines.loading import SpecError
from pipelines.spec_base import SecretSpec

if TYPE_CHECKING:
    from connectors.originals import Origins
    from connectors.secrets.pseudonyms import KeyPins, KeyUse


@dataclass
class StagedOutput:
    """A sink's output that the run publishes once its checks passed (or aborts)."""

    dataset: Dataset
    committer: Any  # connectors.committer.OutputCommitter
    dead_letters: bool = False
    done: Any = None  # the write's finalizing PCollection (its staging listing is written)


def _key_pins() -> KeyPins:
    from connectors.secrets.pseudonyms import KeyPins

    return KeyPins()


@dataclass
class BuildContext:
    """What kind builders read and add to while the graph is built."""

    spec: s.PipelineSpec
    pipeline: beam.Pipeline
    run_id: str
    outputs: dict[str, beam.PCollection] = field(default_factory=dict)
    dead_letters: list[beam.PCollection] = field(default_factory=list)
    inputs: list[Dataset] = field(default_factory=list)
    datasets_out: list[Dataset] = field(default_factory=list)
    kafka_commits: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    committers: list[StagedOutput] = field(default_factory=list)
    # called with the PipelineResult once the outputs are published (an http source's marks)
    after_publish: list[Callable[[Any], None]] = field(default_factory=list)
    # called with the RunSummary after the run, before publishing; a returned problem fails
    # the run (a validate step's table-level expectations)
    before_publish: list[Callable[[Any], str | None]] = field(default_factory=list)
    # the pseudonymisation key versions this run uses (connectors.secrets.pseudonyms)
    key_pins: KeyPins = field(default_factory=_key_pins)

    dataset = Dataset  # kinds describe their inputs and outputs with ctx.dataset(...)

    @staticmethod
    def fail(path: str, problem: str) -> SpecError:
        """The error a builder raises: ``raise ctx.fail(path, problem)``."""
        return SpecError([f"{path}: {problem}"])

    def input_of(self, names: list[str], where: str) -> beam.PCollection:
        pcolls = [self.outputs[n] for n in names]
        if len(pcolls) == 1:
            return pcolls[0]
        return tuple(pcolls) | f"{where}/Union" >> beam.Flatten()

    def own_output(
        self, dataset: Dataset, target: Any, path: str, *, dead_letters: bool = False
    ) -> StagedOutput:
        """Register a sink's staged output, checking now that the sink may write there; the
        sink sets the returned entry's ``done`` to its write's output."""
        from connectors.committer import OutputCommitter, OutputConflict

        committer = OutputCommitter(target)
        try:
            committer.check()
        except OutputConflict as exc:
            raise self.fail(path, f"{exc.problem}; {exc.hint}") from None
        staged = StagedOutput(dataset, committer, dead_letters)
        self.committers.append(staged)
        return staged

    def check_expression(self, text: str, path: str) -> None:
        from transforms.expressions import ExpressionError, parse

        try:
            parse(text)
        except ExpressionError as exc:
            raise self.fail(path, str(exc)) from None


def client_config(config: dict[str, Any], path: str) -> dict[str, Any]:
    """Client properties (librdkafka, ...) with spec secret references turned into
    :class:`connectors.secrets.SecretRef` objects (see :func:`resolve_secret_ref`)."""
    return {
        key: resolve_secret_ref(value, f"{path}.{key}") if isinstance(value, SecretSpec) else value
        for key, value in config.items()
    }


def resolve_secret_ref(spec: Any, path: str) -> Any:
    """A spec's :class:`~pipelines.spec_base.SecretSpec` as a
    :class:`connectors.secrets.SecretRef` (through the one :func:`connectors.secrets.refs.secret_ref`),
    resolved once now so that a missing secret fails before the run (not while planning: see
    :func:`connectors.secrets.left_to_workers`); the value is dropped at once and workers resolve the
    reference again in ``setup``."""
    from connectors.secrets import SecretError, resolved_early
    from connectors.secrets.refs import secret_ref

    if spec is None:
        return None
    config: dict[str, Any] = {k: v for k, v in (("env", spec.env), ("file", spec.file)) if v}
    if spec.store is not None:
        store = dict(spec.store)
        config = {
            "store": store,
            "name": store.pop("name", None),
            "ref": store.pop("ref", "current"),
        }
        if not config["name"]:
            raise BuildContext.fail(path, "a 'store' secret needs a 'name'")
    try:
        ref = secret_ref(config)
        if not resolved_early():  # plan: the workers resolve it (and generate it)
            return ref
        if spec.generate:
            ref.create_if_missing()
        ref.resolve()
    except SecretError as exc:
        raise BuildContext.fail(path, f"{exc}; set it before running") from None
    return ref


@dataclass
class BuiltPipeline:
    pipeline: beam.Pipeline
    inputs: list[Dataset]
    outputs: list[Dataset]
    node_order: list[tuple[str, str]]  # (kind, name) in the order they run
    kafka_commits: list[tuple[str, str, str, dict]]  # sources whose offsets pipelines.run commits
    committers: list[StagedOutput]  # outputs pipelines.run publishes once the run's checks pass
    after_publish: list[Callable[[Any], None]] = field(default_factory=list)
    before_publish: list[Callable[[Any], str | None]] = field(default_factory=list)
    key_uses: list[KeyUse] = field(default_factory=list)  # pseudonymisation keys, for lineage


def build_pipeline(spec: s.PipelineSpec, pipeline: beam.Pipeline, run_id: str) -> BuiltPipeline:
    """Add the spec's transforms to ``pipeline``. Raises SpecError before anything runs."""
    ctx = BuildContext(spec=spec, pipeline=pipeline, run_id=run_id)
    from pipelines.audience_checks import audience_problems
    from pipelines.extras import extra_problems

    problems = extra_problems(spec) or audience_problems(spec)
    if problems:
        raise SpecError(problems)
    order: list[tuple[str, str]] = []
    for i, source in enumerate(spec.sources):
        registry.kind_of(source).build(source, ctx, f"sources[{i}]")
        order.append(("source", source.name))
    sources = {source.name for source in spec.sources}
    rows_as_read: set[str] = set()  # steps reading sources directly: see connectors.originals
    for i, step, names in s.step_inputs(spec):
        if set(names) <= sources:
            rows_as_read.add(step.name)
        named = getattr(step, "named_inputs", None)  # a join: {"left": name, "right": name}
        rows = (
            {role: ctx.outputs[name] for role, name in named.items()}
            if named
            else ctx.input_of(names, step.name)
        )
        outputs = registry.kind_of(step).build(step, ctx, f"steps[{i}]", rows)
        ctx.outputs[step.name] = outputs.rows
        if registry.kind_of(step).combines:  # its rows_out counts input rows: see Kind
            ctx.outputs[step.name] = outputs.rows | f"{step.name}/Emitted" >> beam.Map(
                CountRows(step.name, ROWS_EMITTED)
            ).with_output_types(outputs.rows.element_type)
        ctx.dead_letters.append(outputs.dead_letters)
        order.append(("step", step.name))
    # sinks fed by rows first: a sink that can reject (Kafka deliveries) adds dead letters
    later = []
    audience_rows = AudienceRows(ctx)
    for i, sink, names in s.sink_inputs(spec):
        if names == [s.DEAD_LETTERS_INPUT]:
            later.append((i, sink))
            continue
        rows = audience_rows.rows(names, sink)
        registry.kind_of(sink).build(sink, ctx, f"sinks[{i}]", rows)
        order.append(("sink", sink.name))
    dead = _union_dead_letters(ctx.dead_letters)
    from connectors.originals import RecoverOriginals

    dead = dead | "DeadLetters/Originals" >> RecoverOriginals(_origins(spec, ctx, rows_as_read))
    if spec.dead_letter.redact:
        from transforms.redact import RedactDeadLetters

        dead = dead | "DeadLetters/Redact" >> RedactDeadLetters(s.classified_fields(spec))
    ctx.outputs[s.DEAD_LETTERS_INPUT] = dead
    for i, sink in later:
        registry.kind_of(sink).build(sink, ctx, f"sinks[{i}]", audience_rows.dead(sink.audience))
        order.append(("sink", sink.name))
    _build_dead_letter_sink(spec.dead_letter, ctx, audience_rows.dead(spec.dead_letter.audience))
    order.append(("sink", s.DEAD_LETTERS_INPUT))
    if spec.run.publish == "pipeline":
        _publish_in_pipeline(spec, ctx)
    return BuiltPipeline(
        pipeline,
        ctx.inputs,
        ctx.datasets_out,
        order,
        ctx.kafka_commits,
        ctx.committers,
        ctx.after_publish,
        ctx.before_publish,
        ctx.key_pins.uses,
    )


def discard_unrun(pipeline: beam.Pipeline, spec: s.PipelineSpec, run_id: str) -> None:
    """Remove what building left on local disk, for a pipeline that will not run
    (``validate --deep``, ``plan``, a run refused before it started).

    Why: ``beam.Pipeline()`` makes a ``beam-pipeline-temp*`` directory that Beam removes only
    inside ``Pipeline.run()``, and the build makes the run's scratch folder (the column
    profiles' ``profile_dir``), which lineage removes only after a run; without this every
    validate, plan and refused run left both behind in the temp directory.
    """
    import shutil

    from connectors.files.base import is_remote

    shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)
    scratch = spec.run.profile_dir(run_id).rsplit("/", 1)[0]
    if not is_remote(scratch):  # nothing is made in an object store before a run
        shutil.rmtree(scratch, ignore_errors=True)


def _publish_in_pipeline(spec: s.PipelineSpec, ctx: BuildContext) -> None:
    """``run.publish: pipeline``: the job's last step publishes (or, over the error threshold,
    drops) every staged output (:mod:`connectors.pipeline_publish`)."""
    from connectors.pipeline_publish import (
        PublishWhenWritten,
        count_rejected_at,
        count_rows,
    )

    if s.streaming_sources(spec):
        raise ctx.fail("run.publish", "a streaming job publishes pane by pane; use driver")
    if ctx.kafka_commits or ctx.after_publish or ctx.before_publish:
        raise ctx.fail(
            "run.publish",
            "this spec has steps only a driver can do around publishing (Kafka offsets or a "
            "since checkpoint committed after it, table-level expectations or notifications "
            "judged before or after it); use publish: driver and a runner the driver waits for",
        )
    sources = [src.name for src in spec.sources]
    decoded = [ctx.outputs[name] for name in sources]
    rows = tuple(decoded) | "Publish/Read/Union" >> beam.Flatten() if len(decoded) > 1 else decoded[0]
    dead = ctx.outputs[s.DEAD_LETTERS_INPUT]
    ctx.pipeline | "Publish" >> PublishWhenWritten(
        [(staged.committer, staged.dead_letters) for staged in ctx.committers],
        [staged.done for staged in ctx.committers],
        decoded=count_rows(rows, "Publish/Read"),
        rejected_at_source=count_rejected_at(dead, sources, "Publish/SourceRejects"),
        dead_lettered=count_rows(dead, "Publish/DeadLetters"),
        threshold=spec.run.error_threshold,
        pipeline=spec.name,
    )


def _origins(spec: s.PipelineSpec, ctx: BuildContext, rows_as_read: set[str]) -> Origins:
    """Where every source's records can be read again, so dead letters keep the original
    (each source kind says how: ``Kind.origins``)."""
    from connectors.originals import Origins

    files: dict[str, Any] = {}
    topics: dict[str, Any] = {}
    datasets = {dataset.node: dataset for dataset in ctx.inputs}
    for i, source in enumerate(spec.sources):
        more_files, more_topics = registry.kind_of(source).origins(
            source, datasets.get(source.name), f"sources[{i}]"
        )
        files.update(more_files)
        topics.update(more_topics)
    return Origins(files, topics, frozenset(rows_as_read))


def _union_dead_letters(parts: list[beam.PCollection]) -> beam.PCollection:
    """Every node's dead letters as one collection. In a streaming graph they are first put in
    the global window: a step after a window step rejects rows in event-time windows, and
    Flatten needs one windowing (the dead-letter sink cuts its own processing-time panes)."""
    from connectors.panes import is_streaming

    if any(is_streaming(part) for part in parts):
        parts = [
            part | f"DeadLetters/Rewindow{i}" >> beam.WindowInto(GlobalWindows())
            for i, part in enumerate(parts)
        ]
    return tuple(parts) | "DeadLetters/Union" >> beam.Flatten()


class AudienceRows:
    """The rows each sink gets for its audience: its conditional mask rules applied by one
    plain Mask per distinct (input, masking), shared by the sinks that need the same one, and
    dead letters redacted once per distinct set of fields (:mod:`pipelines.audience_masks`)."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self._masked: dict[tuple[Any, ...], beam.PCollection] = {}

    def rows(self, names: list[str], sink: Any) -> beam.PCollection:
        """What ``sink`` (reading ``names``) writes: the rows, masked for its audience."""
        from pipelines.audience_masks import sink_rules

        rows = self.ctx.input_of(names, sink.name)
        rules = sink_rules(self.ctx.spec, names, sink.audience)
        if not rules:
            return rows
        key = (tuple(names), tuple(r.key for r in rules))
        if key not in self._masked:  # named after the first sink that needs this masking
            self._masked[key] = self._mask(rows, sink.name, rules)
        return self._masked[key]

    def _mask(self, rows: beam.PCollection, sink_name: str, rules: list[Any]) -> Any:
        """Each mask step's rules for this audience, by building that step again with just
        those rules, unconditional: the very mask a user would write for the audience."""
        for index in dict.fromkeys(r.step for r in rules):  # in step order
            step = self.ctx.spec.steps[index]
            mine = [r.rule.model_copy(update={"when": None}) for r in rules if r.step == index]
            node = step.model_copy(update={"name": f"{sink_name}.{step.name}", "fields": mine})
            out = registry.kind_of(node).build(node, self.ctx, f"steps[{index}]", rows)
            self.ctx.dead_letters.append(out.dead_letters)  # a mask rejects nothing; consumed
            rows = out.rows
        return rows

    def dead(self, audience: str | None) -> beam.PCollection:
        from pipelines.audience_masks import dead_letter_fields

        dead = self.ctx.outputs[s.DEAD_LETTERS_INPUT]
        fields = dead_letter_fields(self.ctx.spec, audience)
        if not fields:
            return dead
        key = ("dead_letters", tuple(sorted(fields)))
        if key not in self._masked:
            from transforms.redact import RedactDeadLetters

            label = f"DeadLetters/RedactFor/{audience or 'no_audience'}"
            self._masked[key] = dead | label >> RedactDeadLetters(fields)
        return self._masked[key]


def _build_dead_letter_sink(node: s.DeadLetterSpec, ctx: BuildContext, rows: Any) -> None:
    if node.type == "kafka":
        _build_dead_letter_topic(node, ctx, rows)
        return
    from connectors.fileio import WriteFiles

    assert node.path is not None  # DeadLetterSpec requires it for files
    write = WriteFiles(
        node.path,
        sink_name=s.DEAD_LETTERS_INPUT,
        format_name=node.format,
        mode=node.mode,
        run_id=ctx.run_id,
        pipeline_name=ctx.spec.name,
        force=node.force,
        publish=False,
        where="dead_letter.path",
        triggering_frequency=ctx.spec.run.triggering_frequency,
    )
    dataset = Dataset(s.DEAD_LETTERS_INPUT, "dead_letter", node.path, node.format)
    staged = ctx.own_output(dataset, write.target, "dead_letter.path", dead_letters=True)
    staged.done = rows | "DeadLetters" >> write
    ctx.datasets_out.append(dataset)


def _build_dead_letter_topic(node: s.DeadLetterSpec, ctx: BuildContext, rows: Any) -> None:
    """Dead letters as JSON messages (the record envelope) keyed by source position, with the
    position in the ``_bw_source``/``_bw_offset`` headers. A dead letter that cannot be
    delivered fails the run: there is nowhere further to put it."""
    from connectors.kafka import KafkaConfigError, WriteKafka
    from connectors.kafka.sink import POSITION_KEY
    from connectors.records import with_envelope_positions
    from lineage.naming import kafka_uri

    assert node.bootstrap_servers is not None and node.topic is not None
    try:
        write = WriteKafka(
            node.bootstrap_servers,
            node.topic,
            sink_name=s.DEAD_LETTERS_INPUT,
            key_field=POSITION_KEY,
            on_delivery_failure="fail",
            producer_config=client_config(node.producer_config, "dead_letter.producer_config"),
            run_id=ctx.run_id,
        )
    except (KafkaConfigError, ValueError) as exc:
        raise ctx.fail("dead_letter", str(exc)) from None
    (rows | "DeadLetters/Positions" >> beam.Map(with_envelope_positions) | "DeadLetters" >> write)
    uri = kafka_uri(node.bootstrap_servers, node.topic)
    ctx.datasets_out.append(Dataset(s.DEAD_LETTERS_INPUT, "dead_letter", uri, "kafka"))
