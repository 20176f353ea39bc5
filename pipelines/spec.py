"""The pipeline spec: plain data, validated by pydantic, with no Beam in sight.

The spec is the only contract between business templates and the builder. A template expands
its parameters into a :class:`PipelineSpec`; the builder turns a spec into a Beam graph; the
JSON Schema of :class:`PipelineSpec` (``beamwright schema``) lets editors check spec files.

Every source, step and sink is a model selected by its ``type`` (a discriminated union), so
adding a kind is one model here plus one line in :mod:`pipelines.registry`. Every model
forbids unknown keys and suggests the closest valid key, so ``regx:`` fails with
"did you mean 'regex'?" instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]

FIELD_TYPES = (
    "string",
    "int32",
    "int64",
    "float32",
    "float64",
    "bool",
    "date",
    "timestamp",
    "binary",
)
FieldType = Literal[
    "string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp", "binary"
]


def closest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The most similar of ``choices`` to ``word``, for "did you mean" hints."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return match[0] if match else None


class SpecModel(BaseModel):
    """Base for every spec node: unknown keys are errors, with a hint naming the closest key."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = set()
        for name, info in cls.model_fields.items():
            allowed.add(name)
            if info.alias:
                allowed.add(info.alias)
        unknown = [k for k in data if k not in allowed]
        if unknown:
            key = str(unknown[0])
            guess = closest(key, sorted(allowed))
            hint = (
                f"did you mean '{guess}'?" if guess else f"valid keys: {', '.join(sorted(allowed))}"
            )
            raise ValueError(f"unknown key '{key}'; {hint}")
        return data


# --------------------------------------------------------------------------- parameters


class ParameterSpec(SpecModel):
    """A typed pipeline parameter, substituted wherever ``${name}`` appears in the spec."""

    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    default: Any = None
    description: str = ""
    required: bool = False
    choices: list[Any] | None = None


class SecretRef(SpecModel):
    """Where a secret comes from. The value itself never appears in a spec."""

    env: str | None = None
    file: str | None = None
    store: dict[str, Any] | None = Field(
        default=None,
        description="A secret store config (type: gcp|aws|vault|env|file, ...) with 'name' "
        "and optional 'ref' (current, previous, a version): see beamwright secrets.",
    )
    generate: bool = Field(
        default=False,
        description="With 'file': create a random 32-byte key there (mode 0600) when missing. "
        "For local defaults; production keys come from a secret store.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if sum(x is not None for x in (self.env, self.file, self.store)) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'store'")
        if self.generate and self.file is None:
            raise ValueError("'generate' only applies to 'file' secrets")
        return self


# --------------------------------------------------------------------------- sources


class FileSourceSpec(SpecModel):
    """Files matching a glob pattern, decoded straight into Arrow batches."""

    type: Literal["file"]
    name: Name
    path: str = Field(description="File path or glob pattern (local, gs://, s3://, ...).")
    format: Literal["jsonl", "csv", "parquet", "avro"] | None = Field(
        default=None, description="Inferred from the file extension when omitted."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Format options, e.g. {delimiter: ';'} for CSV."
    )
    allow_empty: bool = Field(
        default=False, description="Succeed when the pattern matches no file."
    )


ConfigValue = str | int | float | bool | SecretRef


class KafkaSourceSpec(SpecModel):
    """Kafka topics read by a pure-Python splittable DoFn (no Java), decoded into Arrow."""

    type: Literal["kafka"]
    name: Name
    bootstrap_servers: str
    topics: str | list[str]
    group_id: str
    value_format: Literal["json", "avro", "confluent_avro", "bytes", "string"] = "json"
    avro_schema: str | None = Field(default=None, description="Path of an .avsc file.")
    schema_registry_url: str | None = None
    start: Literal["committed", "earliest", "latest"] | dict[str, Any] = Field(
        default="committed",
        description="Where partitions the group has no committed offset for begin (Kafka's "
        "auto.offset.reset): committed (= consumer_config auto.offset.reset, earliest by "
        "default), earliest, latest, {timestamp_ms: ...} or {offsets: {'topic/partition': n}}. "
        "Partitions with a committed offset always continue from it.",
    )
    bounded: Literal["end_offsets"] | None = Field(
        default="end_offsets",
        description="end_offsets: stop at the end offsets seen at start (local runs, --follow "
        "cycles); null: unbounded (Flink, Dataflow).",
    )
    max_records: int | None = Field(default=None, ge=1)
    max_duration_s: float | None = Field(default=None, gt=0)
    event_time: str = Field(
        default="kafka_timestamp", description="kafka_timestamp, or a field of the value."
    )
    consumer_config: dict[str, ConfigValue] = Field(
        default_factory=dict,
        description="librdkafka properties; passwords as secret references {env: ...}.",
    )


SourceSpec = Annotated[FileSourceSpec | KafkaSourceSpec, Field(discriminator="type")]


# --------------------------------------------------------------------------- validate rules


class RuleBase(SpecModel):
    id: str | None = Field(
        default=None, description="Name used in dead letters and metrics; derived when omitted."
    )
    severity: Literal["error", "warning"] = Field(
        default="error",
        description="error: failing rows go to the dead letters; warning: counted only.",
    )

    def rule_id(self, index: int) -> str:
        field = getattr(self, "field", None)
        kind = getattr(self, "rule", "rule")
        return self.id or (f"{kind}:{field}" if field else f"{kind}#{index}")


class NotNullRule(RuleBase):
    rule: Literal["not_null"]
    field: str


class BetweenRule(RuleBase):
    """``min <= value <= max``; either bound may be omitted (``min``/``max`` rules alias this)."""

    rule: Literal["between", "min", "max"]
    field: str
    min: float | None = None
    max: float | None = None
    exclusive: bool = False
    allow_nan: bool = Field(
        default=False, description="Let NaN pass; by default NaN fails, as it is in no range."
    )

    @model_validator(mode="after")
    def _bounds(self) -> BetweenRule:
        if self.min is None and self.max is None:
            raise ValueError("set 'min', 'max' or both")
        if self.rule == "min" and self.min is None:
            raise ValueError("the 'min' rule needs a 'min' value")
        if self.rule == "max" and self.max is None:
            raise ValueError("the 'max' rule needs a 'max' value")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class RegexRule(RuleBase):
    rule: Literal["regex"]
    field: str
    regex: str = Field(description="RE2 pattern; the whole value must match.")

    @model_validator(mode="after")
    def _compiles(self) -> RegexRule:
        try:
            re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"invalid regex {self.regex!r}: {exc}") from None
        return self


class InSetRule(RuleBase):
    rule: Literal["in_set"]
    field: str
    values: list[Any] = Field(min_length=1)


class LengthRule(RuleBase):
    rule: Literal["length"]
    field: str
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> LengthRule:
        if self.min is None and self.max is None:
            raise ValueError("set 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class UniqueRule(RuleBase):
    """No duplicate values within a batch (the first occurrence is kept)."""

    rule: Literal["unique"]
    field: str


class ExpressionRule(RuleBase):
    """A row passes when the safe expression is true (null counts as a failure)."""

    rule: Literal["expression"]
    expr: str
    message: str | None = None


RuleSpec = Annotated[
    NotNullRule | BetweenRule | RegexRule | InSetRule | LengthRule | UniqueRule | ExpressionRule,
    Field(discriminator="rule"),
]


class FieldSpec(SpecModel):
    type: FieldType = "string"
    required: bool = False
    description: str = ""
    classification: str | None = Field(
        default=None, description="Data classification, e.g. PII or confidential."
    )


# --------------------------------------------------------------------------- steps


class StepBase(SpecModel):
    name: Name
    input: Name | list[Name] | None = Field(
        default=None,
        description="Source or step name(s) feeding this step. Default: the previous step, "
        "or for the first step every source not used as a lookup.",
    )
    description: str = ""


class ValidateStepSpec(StepBase):
    type: Literal["validate"]
    fields: dict[str, FieldSpec] = Field(default_factory=dict)
    schema_file: str | None = Field(
        default=None, description="JSON Schema (.json) or Avro schema (.avsc) giving field types."
    )
    additional_fields: Literal["keep", "drop", "reject"] = "keep"
    rules: list[RuleSpec] = Field(default_factory=list)
    expectations: str | None = Field(
        default=None, description="Great Expectations 1.x expectation suite (JSON file)."
    )


class MaskFieldSpec(SpecModel):
    field: str
    strategy: Literal["redact", "partial", "hash", "pseudonymize", "bucket", "email_domain"]
    replacement: str | None = None
    keep_last: int | None = Field(default=None, ge=0)
    keep_first: int | None = Field(default=None, ge=0)
    mask_char: str | None = Field(default=None, min_length=1, max_length=1)
    salt: SecretRef | None = None
    key: SecretRef | None = None
    length: int | None = Field(default=None, ge=16, le=64)
    boundaries: list[float] | None = None
    labels: list[str] | None = None
    prefix: str | None = None
    suffix: str | None = None

    _NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {
        "hash": ("salt",),
        "pseudonymize": ("key",),
        "bucket": ("boundaries",),
    }

    @model_validator(mode="after")
    def _required_options(self) -> MaskFieldSpec:
        for option in self._NEEDS.get(self.strategy, ()):
            if getattr(self, option) is None:
                raise ValueError(f"strategy '{self.strategy}' needs '{option}'")
        return self


class MaskStepSpec(StepBase):
    type: Literal["mask"]
    fields: list[MaskFieldSpec] = Field(min_length=1)


class MapStepSpec(StepBase):
    """Reshape rows: rename, cast, derive (safe expressions), drop, select — in that order."""

    type: Literal["map"]
    rename: dict[str, str] = Field(default_factory=dict)
    cast: dict[str, FieldType] = Field(default_factory=dict)
    derive: dict[str, str] = Field(
        default_factory=dict, description="New or replaced field -> expression."
    )
    drop: list[str] = Field(default_factory=list)
    select: list[str] | None = None


class FilterStepSpec(StepBase):
    """Keep rows where ``where`` is true; the others are counted as filtered (not rejected)."""

    type: Literal["filter"]
    where: str


class LookupStepSpec(StepBase):
    """Enrich rows from a lookup source (a side input), joined on key fields."""

    type: Literal["lookup"]
    lookup: Name = Field(description="Name of the source that holds the reference data.")
    on: str | list[str] = Field(description="Key field(s), present in both inputs.")
    fields: list[str] | None = Field(
        default=None, description="Lookup fields to add (default: all but the keys)."
    )
    prefix: str = ""
    cast: dict[str, FieldType] = Field(
        default_factory=dict,
        description="Types for lookup fields (CSV reference data arrives as text); values "
        "that do not cast become null and are counted.",
    )
    on_missing: Literal["keep", "reject", "drop"] = Field(
        default="keep",
        description="keep: add nulls; reject: dead-letter the row; drop: count as filtered.",
    )

    @property
    def keys(self) -> list[str]:
        return [self.on] if isinstance(self.on, str) else list(self.on)


class WindowShape(SpecModel):
    type: Literal["fixed", "sliding", "session", "global"] = "fixed"
    size: float | None = Field(default=None, gt=0, description="Seconds (fixed, sliding).")
    period: float | None = Field(default=None, gt=0, description="Seconds (sliding).")
    gap: float | None = Field(default=None, gt=0, description="Seconds (session).")
    offset: float = 0.0


class WindowStepSpec(StepBase):
    """Event-time windows with triggers and lateness; late rows go to the dead letters."""

    type: Literal["window"]
    event_time: str | None = Field(
        default=None, description="Timestamp/date/epoch-millis field; default: element time."
    )
    window: WindowShape = Field(default_factory=WindowShape)
    trigger: dict[str, Any] | None = Field(
        default=None,
        description="e.g. {type: watermark, early: {type: processing_time, delay: 10}, "
        "late: {type: count, count: 1}}",
    )
    allowed_lateness: float = Field(default=0.0, ge=0)
    accumulation: Literal["discarding", "accumulating"] = "discarding"
    group_by: list[str] = Field(default_factory=list)
    metrics: dict[str, str] = Field(default_factory=lambda: {"rows": "count"})
    grace: float = Field(default=60.0, ge=0)


class BatchStepSpec(StepBase):
    """GroupIntoBatches-style batches per key, flushed by size or by buffering time."""

    type: Literal["batch"]
    key: list[str] = Field(min_length=1)
    batch_size: int = Field(ge=1)
    max_buffering_duration: float | None = Field(default=None, gt=0)


StepSpec = Annotated[
    ValidateStepSpec
    | MaskStepSpec
    | MapStepSpec
    | FilterStepSpec
    | LookupStepSpec
    | WindowStepSpec
    | BatchStepSpec,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- sinks


DEAD_LETTERS_INPUT = "dead_letters"


class SinkBase(SpecModel):
    name: Name
    input: Name | None = Field(
        default=None,
        description="Step or source (default: last step); 'dead_letters' reads the run's "
        "dead letters, e.g. for an alert report.",
    )


class FileSinkSpec(SinkBase):
    """A directory of sharded files: ``part-00000-of-00002.parquet`` and so on."""

    type: Literal["file"]
    path: str = Field(description="Output directory (local, gs://, ...); the sink owns it.")
    format: Literal["jsonl", "csv", "parquet", "avro"] = "parquet"
    options: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["overwrite", "append", "error_if_exists"] | None = Field(
        default=None,
        description="overwrite: replace this sink's own earlier files (listed in its manifest; "
        "never files it did not write); append: add files; error_if_exists: refuse a "
        "non-empty directory. Default: overwrite, or append when a source can be unbounded "
        "(Kafka), where overwrite is refused.",
    )
    force: bool = Field(
        default=False,
        description="Write into a directory that holds files this sink does not own (or that "
        "another sink owns); those files are kept, never deleted.",
    )
    keep_positions: bool = Field(
        default=False,
        description="Keep the source position columns _bw_source/_bw_offset in the output, so "
        "downstream readers can deduplicate at-least-once deliveries.",
    )


class ReportSinkSpec(SinkBase):
    """An aggregate report of its input (one row per group), as JSON or CSV."""

    type: Literal["report"]
    path: str = Field(description="Output file (.json or .csv).")
    group_by: list[str] = Field(default_factory=list)
    metrics: dict[str, str] = Field(
        default_factory=lambda: {"rows": "count"},
        description="Output column -> 'count' or 'sum|min|max|mean(field)'.",
    )

    @model_validator(mode="after")
    def _metrics(self) -> ReportSinkSpec:
        for column, metric in self.metrics.items():
            if not METRIC_PATTERN.match(metric):
                raise ValueError(
                    f"metric '{column}: {metric}' is not 'count' or 'sum|min|max|mean(field)'"
                )
        if not self.path.endswith((".json", ".csv")):
            raise ValueError("report path must end with .json or .csv")
        return self


METRIC_PATTERN = re.compile(r"^(count|(sum|min|max|mean|count_distinct)\(([A-Za-z_][\w.]*)\))$")


class KafkaSinkSpec(SinkBase):
    """An idempotent Kafka producer; failed deliveries are dead-lettered or fail the run."""

    type: Literal["kafka"]
    bootstrap_servers: str
    topic: str
    key_field: str | None = None
    value_format: Literal["json", "avro", "confluent_avro"] = "json"
    avro_schema: str | None = None
    schema_registry_url: str | None = None
    on_delivery_failure: Literal["dead_letter", "fail"] = "dead_letter"
    producer_config: dict[str, ConfigValue] = Field(default_factory=dict)


SinkSpec = Annotated[FileSinkSpec | ReportSinkSpec | KafkaSinkSpec, Field(discriminator="type")]


class DeadLetterSpec(SpecModel):
    path: str = Field(description="Directory for dead-letter files.")
    format: Literal["jsonl", "parquet", "avro"] = "jsonl"
    mode: Literal["append", "overwrite"] = Field(
        default="append",
        description="append (default): each run adds its own files, so re-runs never erase "
        "the dead letters of earlier runs; overwrite: keep only the last run's.",
    )
    force: bool = Field(
        default=False,
        description="Write into a directory holding files the dead-letter sink does not own "
        "(they are kept, never deleted).",
    )
    redact: bool = Field(
        default=False,
        description="Replace the values of classified fields (governance.fields and validate "
        "field classifications) in payloads with [REDACTED]; raw payload bytes are dropped.",
    )


# --------------------------------------------------------------------------- the pipeline


class RunSettings(SpecModel):
    batch_size: int = Field(default=10_000, ge=1, le=1_000_000, description="Rows per Arrow batch.")
    error_threshold: float = Field(
        default=0.05,
        ge=0.0,
        le=1.0,
        description="Fail the run when more than this fraction of rows is dead-lettered.",
    )
    runner: Literal["direct", "portable", "flink", "dataflow"] = "direct"
    direct_num_workers: int = Field(default=1, ge=1)
    runner_options: dict[str, Any] = Field(
        default_factory=dict, description="Extra Beam pipeline options, e.g. {project: my-proj}."
    )
    temp_location: str | None = Field(
        default=None,
        description="Where run artifacts (column profiles) go; default: the system temp dir. "
        "Use a gs:// path on Dataflow.",
    )


class GovernanceSpec(SpecModel):
    """What the data is and which rules apply; carried into lineage events and reports."""

    frameworks: list[str] = Field(
        default_factory=list, description="Compliance frameworks, e.g. GDPR, SOX, HIPAA, PCI-DSS."
    )
    classification: str = Field(
        default="internal", description="Default classification of unlisted fields."
    )
    fields: dict[str, str] = Field(
        default_factory=dict, description="Field -> classification, e.g. {email: PII}."
    )


class LineageSettings(SpecModel):
    namespace: str = "beamwright"
    heartbeat_seconds: float = Field(
        default=60.0, gt=0, description="Interval of RUNNING events for streaming/continuous runs."
    )
    event_log: str | None = Field(
        default=None,
        description="JSONL file for OpenLineage events when no OpenLineage transport is "
        "configured (default: <output_root>/lineage/events.jsonl).",
    )
    enabled: bool = True
    transport: dict[str, Any] | None = Field(
        default=None,
        description="An openlineage-python transport config, e.g. {type: http, url: ...}; "
        "overrides openlineage.yml and OPENLINEAGE__* variables.",
    )
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="Longest wait at the end of a run for undelivered events."
    )


class PipelineSpec(SpecModel):
    name: Name
    description: str = ""
    version: str = "1"
    owner: str | None = None
    template: str | None = Field(default=None, description="Template that produced this spec.")
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    run: RunSettings = Field(default_factory=RunSettings)
    sources: list[SourceSpec] = Field(min_length=1)
    steps: list[StepSpec] = Field(default_factory=list)
    sinks: list[SinkSpec] = Field(min_length=1)
    dead_letter: DeadLetterSpec
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)

    @model_validator(mode="after")
    def _graph(self) -> PipelineSpec:
        check_graph(self)
        _resolve_sink_modes(self)
        check_outputs(self)
        return self

    # -- convenience for Python users customising a template's spec --------------------
    def step(self, name: str) -> Any:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"no step named '{name}'; steps: {[s.name for s in self.steps]}")

    def sink(self, name: str) -> Any:
        for sink in self.sinks:
            if sink.name == name:
                return sink
        raise KeyError(f"no sink named '{name}'; sinks: {[s.name for s in self.sinks]}")

    def add_step(
        self, step: dict[str, Any] | BaseModel, *, after: str | None = None
    ) -> PipelineSpec:
        """A copy of this spec with ``step`` inserted after ``after`` (default: at the end)."""
        data = self.model_dump(mode="python", exclude_none=False)
        new = step.model_dump() if isinstance(step, BaseModel) else dict(step)
        index = len(data["steps"])
        if after is not None:
            index = [s["name"] for s in data["steps"]].index(after) + 1
        data["steps"].insert(index, new)
        return PipelineSpec.model_validate(data)

    def run_pipeline(self, **kwargs: Any) -> Any:
        """Run this spec (imports Beam); see :func:`pipelines.run.run_spec`."""
        from pipelines.run import run_spec

        return run_spec(self, **kwargs)


def check_graph(spec: PipelineSpec) -> None:
    """Names are unique and every ``input`` / ``lookup`` names something defined earlier."""
    seen: dict[str, str] = {}
    for kind, nodes in (("source", spec.sources), ("step", spec.steps), ("sink", spec.sinks)):
        for i, node in enumerate(nodes):
            if node.name in seen:
                raise ValueError(
                    f"{kind}s[{i}].name: '{node.name}' is already the name of a {seen[node.name]}"
                )
            seen[node.name] = kind
    available = {s.name for s in spec.sources}
    for i, step in enumerate(spec.steps):
        for ref in [step.input] if isinstance(step.input, str) else step.input or []:
            if ref not in available:
                raise ValueError(_unknown_ref(f"steps[{i}].input", ref, available))
        if isinstance(step, LookupStepSpec) and step.lookup not in {s.name for s in spec.sources}:
            raise ValueError(
                _unknown_ref(f"steps[{i}].lookup", step.lookup, {s.name for s in spec.sources})
            )
        available.add(step.name)
    available.add(DEAD_LETTERS_INPUT)
    for i, sink in enumerate(spec.sinks):
        if sink.input is not None and sink.input not in available:
            raise ValueError(_unknown_ref(f"sinks[{i}].input", sink.input, available))


def _resolve_sink_modes(spec: PipelineSpec) -> None:
    """File sinks default to overwrite, or to append when a source can be unbounded: there an
    overwrite would erase the rows of earlier cycles whose offsets are already committed."""
    streaming = [src.name for src in spec.sources if isinstance(src, KafkaSourceSpec)]
    for i, sink in enumerate(spec.sinks):
        if not isinstance(sink, FileSinkSpec):
            continue
        if sink.mode is None:
            sink.mode = "append" if streaming else "overwrite"
        elif sink.mode == "overwrite" and streaming:
            raise ValueError(
                f"sinks[{i}].mode: overwrite would erase the rows of earlier runs or --follow "
                f"cycles, whose source offsets ({', '.join(streaming)}) are already committed; "
                "use mode: append (the default with a Kafka source)"
            )


def check_outputs(spec: PipelineSpec) -> None:
    """No two outputs share or nest paths, and none lies inside an input glob."""
    from pipelines.output_paths import Output, overlaps

    outputs = []
    for i, sink in enumerate(spec.sinks):
        if isinstance(sink, (FileSinkSpec, ReportSinkSpec)):
            outputs.append(
                Output(
                    f"sinks[{i}].path",
                    f"sink '{sink.name}'",
                    sink.path,
                    is_file=isinstance(sink, ReportSinkSpec),
                )
            )
    outputs.append(Output("dead_letter.path", "the dead letters", spec.dead_letter.path, False))
    inputs = [
        (f"sources[{i}].path", src.path)
        for i, src in enumerate(spec.sources)
        if isinstance(src, FileSourceSpec)
    ]
    problems = list(overlaps(outputs, inputs))
    if problems:
        raise ValueError(problems[0])


def _unknown_ref(path: str, ref: str, available: set[str]) -> str:
    guess = closest(ref, sorted(available))
    hint = (
        f"did you mean '{guess}'?" if guess else f"defined so far: {', '.join(sorted(available))}"
    )
    return f"{path}: '{ref}' is not a source or an earlier step; {hint}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editors (``beamwright schema``)."""
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "beamwright pipeline spec"
    return schema
