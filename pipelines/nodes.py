"""Builders that turn one spec node (source, step or sink) into Beam transforms.

Each builder takes the node's spec and the :class:`BuildContext` and returns PCollections. The
registry (:mod:`pipelines.registry`) maps each spec ``type`` to one builder. Builders check
what can be checked before the pipeline starts (files exist, schema files and expectation
suites parse, expressions compile, secrets resolve) and raise :class:`SpecError` naming the
spec path and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import apache_beam as beam

from pipelines import spec as s
from pipelines.loading import SpecError


@dataclass
class Dataset:
    """An input or output of the run, as lineage and the summary see it."""

    node: str
    kind: str  # "source" | "sink" | "dead_letter"
    uri: str  # a directory, file or pattern
    format: str
    files: list[str] = field(default_factory=list)


@dataclass
class BuildContext:
    spec: s.PipelineSpec
    pipeline: beam.Pipeline
    run_id: str
    outputs: dict[str, beam.PCollection] = field(default_factory=dict)
    dead_letters: list[beam.PCollection] = field(default_factory=list)
    inputs: list[Dataset] = field(default_factory=list)
    datasets_out: list[Dataset] = field(default_factory=list)
    kafka_commits: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    committers: list[Any] = field(default_factory=list)  # StagedOutput: published after the run

    def own_output(self, dataset: Dataset, target: Any, path: str, *, dead_letters: bool = False) -> None:
        """Register a sink's staged output, checking now that the sink may write there."""
        from connectors.committer import OutputCommitter, OutputConflict

        committer = OutputCommitter(target)
        try:
            committer.check()
        except OutputConflict as exc:
            raise _fail(path, f"{exc.problem}; {exc.hint}") from None
        self.committers.append(StagedOutput(dataset, committer, dead_letters))

    def input_of(self, names: list[str], where: str) -> beam.PCollection:
        pcolls = [self.outputs[n] for n in names]
        if len(pcolls) == 1:
            return pcolls[0]
        return tuple(pcolls) | f"{where}/Union" >> beam.Flatten()


@dataclass
class StagedOutput:
    """A sink's output that the run publishes once its checks passed (or aborts)."""

    dataset: Dataset
    committer: Any  # connectors.committer.OutputCommitter
    dead_letters: bool = False


def _fail(path: str, problem: str) -> SpecError:
    return SpecError([f"{path}: {problem}"])


# --------------------------------------------------------------------------- sources


def build_file_source(node: s.FileSourceSpec, ctx: BuildContext, path: str) -> None:
    from connectors.fileio import ReadFiles, ensure_directory, match_files, plan_reads
    from connectors.files.base import CorruptFileError
    from connectors.files.registry import infer_format, make_format

    try:
        make_format(node.format or "jsonl", **node.options)
    except (ValueError, TypeError) as exc:
        raise _fail(f"{path}.options", str(exc)) from None
    files = match_files(node.path)
    if not files and not node.allow_empty:
        raise _fail(
            f"{path}.path",
            f"no file matches '{node.path}'; check the path, or set allow_empty: true",
        )
    if node.format is None:
        for f in files:
            try:
                infer_format(f)
            except ValueError as exc:
                raise _fail(f"{path}.format", f"{exc}; set 'format' explicitly") from None
    try:
        tasks = plan_reads(node.path, node.format, node.options)
    except CorruptFileError as exc:
        raise _fail(f"{path}.path", str(exc)) from None
    outputs = ctx.pipeline | node.name >> ReadFiles(
        tasks,
        source_name=node.name,
        format_name=node.format,
        options=node.options,
        batch_size=ctx.spec.run.batch_size,
        run_id=ctx.run_id,
    )
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    if ctx.spec.lineage.enabled:
        from pipelines.lineage_run import profile_dir
        from transforms.profile import WriteProfile

        folder = profile_dir(ctx.spec, ctx.run_id)
        ensure_directory(folder)
        outputs.rows | f"{node.name}/Profile" >> WriteProfile(folder, node.name)
    fmt = node.format or (infer_format(files[0]) if files else "jsonl")
    ctx.inputs.append(Dataset(node.name, "source", node.path, fmt, files))


# --------------------------------------------------------------------------- steps


def _rule(rule: Any, index: int) -> Any:
    from transforms import rules as r

    common = {"id": rule.rule_id(index), "severity": rule.severity}
    if isinstance(rule, s.NotNullRule):
        return r.NotNull(field=rule.field, **common)
    if isinstance(rule, s.BetweenRule):
        return r.Between(
            field=rule.field,
            min=rule.min,
            max=rule.max,
            exclusive=rule.exclusive,
            allow_nan=rule.allow_nan,
            **common,
        )
    if isinstance(rule, s.RegexRule):
        return r.Regex(field=rule.field, pattern=rule.regex, **common)
    if isinstance(rule, s.InSetRule):
        return r.InSet(field=rule.field, values=tuple(rule.values), **common)
    if isinstance(rule, s.LengthRule):
        return r.Length(field=rule.field, min=rule.min, max=rule.max, **common)
    if isinstance(rule, s.UniqueRule):
        return r.Unique(field=rule.field, **common)
    return r.Expression(expr=rule.expr, message=rule.message, **common)


def _check_expression(text: str, path: str) -> None:
    from transforms.expressions import ExpressionError, parse

    try:
        parse(text)
    except ExpressionError as exc:
        raise _fail(path, str(exc)) from None


def build_validate(
    node: s.ValidateStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> Any:
    from pipelines.schemas import SchemaFileError, load_field_types
    from transforms.validate import Validate

    fields: dict[str, str] = {}
    required: set[str] = set()
    if node.schema_file:
        try:
            fields, required = load_field_types(node.schema_file)
        except SchemaFileError as exc:
            raise _fail(f"{path}.schema_file", str(exc)) from None
    for name, f in node.fields.items():
        fields[name] = f.type
        if f.required:
            required.add(name)
    for i, rule in enumerate(node.rules):
        if isinstance(rule, s.ExpressionRule):
            _check_expression(rule.expr, f"{path}.rules[{i}].expr")
    suite = None
    if node.expectations:
        from transforms.expectations import ExpectationSuite, ExpectationSuiteError

        try:
            suite = ExpectationSuite.from_file(node.expectations)
            suite.check_with_gx()
        except (ExpectationSuiteError, OSError) as exc:
            raise _fail(f"{path}.expectations", str(exc)) from None
    return rows | node.name >> Validate(
        step_name=node.name,
        run_id=ctx.run_id,
        fields=fields,
        required=required,
        rules=[_rule(rule, i) for i, rule in enumerate(node.rules)],
        expectations=suite,
        additional_fields=node.additional_fields,
    )


def _secret_ref(ref: s.SecretRef | None, path: str) -> Any:
    from connectors.secrets import EnvSecret, FileSecret, SecretError

    if ref is None:
        return None
    if ref.store is not None:
        from connectors.secrets.refs import secret_ref

        config = dict(ref.store)
        name, version = config.pop("name", None), config.pop("ref", "current")
        if not name:
            raise _fail(path, "a 'store' secret needs a 'name'")
        secret = secret_ref({"store": config, "name": name, "ref": version})
    elif ref.env:
        secret = EnvSecret(ref.env)
    else:
        secret = FileSecret(ref.file)
        if ref.generate:
            secret.create_if_missing()
    try:
        secret.resolve()  # fail before the run starts; the value is dropped at once
    except SecretError as exc:
        raise _fail(path, f"{exc}; set it before running") from None
    return secret


def build_mask(node: s.MaskStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection) -> Any:
    from transforms.mask import Mask

    fields = []
    for i, f in enumerate(node.fields):
        options = f.model_dump(exclude_none=True, exclude={"salt", "key"})
        for secret in ("salt", "key"):
            ref = _secret_ref(getattr(f, secret), f"{path}.fields[{i}].{secret}")
            if ref is not None:
                options[secret] = ref
        fields.append(options)
    from transforms.masking import MaskError

    try:
        mask = Mask(fields=fields, step_name=node.name)
    except MaskError as exc:
        raise _fail(f"{path}.fields", str(exc)) from None
    return rows | node.name >> mask


def build_map(node: s.MapStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection) -> Any:
    from transforms.reshape import MapRows

    for name, text in node.derive.items():
        _check_expression(text, f"{path}.derive.{name}")
    return rows | node.name >> MapRows(
        step_name=node.name,
        run_id=ctx.run_id,
        rename=node.rename,
        cast=node.cast,
        derive=node.derive,
        drop=node.drop,
        select=node.select,
    )


def build_filter(
    node: s.FilterStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> Any:
    from transforms.reshape import FilterRows

    _check_expression(node.where, f"{path}.where")
    return rows | node.name >> FilterRows(where=node.where, step_name=node.name)


def build_lookup(
    node: s.LookupStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> Any:
    from transforms.lookup import Lookup

    return rows | node.name >> Lookup(
        ctx.outputs[node.lookup],
        step_name=node.name,
        run_id=ctx.run_id,
        keys=node.keys,
        fields=node.fields,
        prefix=node.prefix,
        cast=node.cast,
        on_missing=node.on_missing,
    )


# --------------------------------------------------------------------------- sinks


def build_file_sink(
    node: s.FileSinkSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> None:
    from connectors.fileio import WriteFiles

    try:
        write = WriteFiles(
            node.path,
            sink_name=node.name,
            format_name=node.format,
            options=node.options,
            mode=node.mode or "overwrite",
            run_id=ctx.run_id,
            pipeline_name=ctx.spec.name,
            force=node.force,
            keep_positions=node.keep_positions,
            publish=False,
            where=f"{path}.path",
        )
    except (ValueError, TypeError) as exc:
        raise _fail(f"{path}.options", str(exc)) from None
    dataset = Dataset(node.name, "sink", node.path, node.format)
    ctx.own_output(dataset, write.target, f"{path}.path")
    rows | node.name >> write
    ctx.datasets_out.append(dataset)


def build_report_sink(
    node: s.ReportSinkSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> None:
    from connectors.report import WriteReport
    from transforms.aggregate import GroupAggregate

    write = WriteReport(
        node.path,
        sink_name=node.name,
        run_id=ctx.run_id,
        pipeline_name=ctx.spec.name,
        publish=False,
        where=f"{path}.path",
    )
    dataset = Dataset(node.name, "sink", node.path, node.path.rsplit(".", 1)[-1])
    ctx.own_output(dataset, write.target, f"{path}.path")
    (
        rows
        | f"{node.name}/Aggregate"
        >> beam.CombineGlobally(GroupAggregate(node.group_by, node.metrics))
        | node.name >> write
    )
    ctx.datasets_out.append(dataset)


def build_dead_letter_sink(node: s.DeadLetterSpec, ctx: BuildContext) -> None:
    from connectors.fileio import WriteFiles

    write = WriteFiles(
        node.path,
        sink_name="dead_letters",
        format_name=node.format,
        mode=node.mode,
        run_id=ctx.run_id,
        pipeline_name=ctx.spec.name,
        force=node.force,
        publish=False,
        where="dead_letter.path",
    )
    dataset = Dataset("dead_letters", "dead_letter", node.path, node.format)
    ctx.own_output(dataset, write.target, "dead_letter.path", dead_letters=True)
    ctx.outputs[s.DEAD_LETTERS_INPUT] | "DeadLetters" >> write
    ctx.datasets_out.append(dataset)


# --------------------------------------------------------------------------- kafka


def kafka_config(config: dict[str, Any], path: str) -> dict[str, Any]:
    """librdkafka properties with secret references turned into connectors.secrets refs."""
    return {
        key: _secret_ref(value, f"{path}.{key}") if isinstance(value, s.SecretRef) else value
        for key, value in config.items()
    }


def build_kafka_source(node: s.KafkaSourceSpec, ctx: BuildContext, path: str) -> None:
    from connectors.kafka import KafkaConfigError, ReadKafka

    topics = [node.topics] if isinstance(node.topics, str) else list(node.topics)
    unbounded = node.bounded is None
    # Locally "durable" means in memory, and file sinks rename after bundle finalization:
    # commit once the whole run has succeeded instead (pipelines.run does it).
    commit = "manual" if ctx.spec.run.runner == "direct" else "bundle"
    try:
        read = ReadKafka(
            node.bootstrap_servers,
            topics,
            source_name=node.name,
            group_id=node.group_id,
            value_format=node.value_format,
            avro_schema=node.avro_schema,
            schema_registry_url=node.schema_registry_url,
            start=node.start,
            bounded=node.bounded,
            max_records=node.max_records,
            max_duration_s=node.max_duration_s,
            batch_size=ctx.spec.run.batch_size,
            consumer_config=kafka_config(node.consumer_config, f"{path}.consumer_config"),
            event_time=node.event_time,
            commit=commit,
            run_id=ctx.run_id,
        )
        outputs = ctx.pipeline | node.name >> read
    except (KafkaConfigError, ValueError) as exc:
        raise _fail(path, str(exc)) from None
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    if commit == "manual" and not unbounded:
        ctx.kafka_commits.append(
            (node.name, node.bootstrap_servers, node.group_id, node.consumer_config)
        )
    for topic in topics:
        ctx.inputs.append(
            Dataset(node.name, "source", f"kafka://{node.bootstrap_servers}/{topic}", "kafka")
        )


def build_kafka_sink(
    node: s.KafkaSinkSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> None:
    from connectors.kafka import KafkaConfigError, WriteKafka

    try:
        write = WriteKafka(
            node.bootstrap_servers,
            node.topic,
            sink_name=node.name,
            key_field=node.key_field,
            value_format=node.value_format,
            avro_schema=node.avro_schema,
            schema_registry_url=node.schema_registry_url,
            on_delivery_failure=node.on_delivery_failure,
            producer_config=kafka_config(node.producer_config, f"{path}.producer_config"),
            run_id=ctx.run_id,
        )
        outputs = rows | node.name >> write
    except (KafkaConfigError, ValueError) as exc:
        raise _fail(path, str(exc)) from None
    ctx.dead_letters.append(outputs.dead_letters)
    ctx.datasets_out.append(
        Dataset(node.name, "sink", f"kafka://{node.bootstrap_servers}/{node.topic}", "kafka")
    )


# --------------------------------------------------------------------------- streaming steps


def build_window(
    node: s.WindowStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection
) -> Any:
    from transforms.windowing import Window, trigger_from_config, window_fn

    try:
        shape = node.window
        transform = Window(
            window_fn=window_fn(
                shape.type, size=shape.size, period=shape.period, gap=shape.gap, offset=shape.offset
            ),
            key_fields=node.group_by,
            metrics=node.metrics,
            event_time_field=node.event_time,
            trigger=trigger_from_config(node.trigger),
            allowed_lateness=node.allowed_lateness,
            accumulation=node.accumulation,
            grace=node.grace,
            step_name=node.name,
            run_id=ctx.run_id,
        )
    except (ValueError, TypeError) as exc:
        raise _fail(path, str(exc)) from None
    return rows | node.name >> transform


def build_batch(node: s.BatchStepSpec, ctx: BuildContext, path: str, rows: beam.PCollection) -> Any:
    from transforms.batching import BatchByKey

    return rows | node.name >> BatchByKey(
        key_fields=node.key,
        batch_size=node.batch_size,
        max_buffering_duration=node.max_buffering_duration,
        step_name=node.name,
        run_id=ctx.run_id,
    )
