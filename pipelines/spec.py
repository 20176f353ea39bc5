"""The pipeline spec: plain data, validated by pydantic, with no Beam in sight.

The spec is the only contract between business templates and the builder. A template expands
its parameters into a :class:`PipelineSpec`; the builder turns a spec into a Beam graph; the
JSON Schema of :class:`PipelineSpec` (``beamwright schema``) lets editors check spec files.

Sources, steps and sinks are discriminated unions of the models of every registered kind
(:mod:`pipelines.registry`): a kind module's model joins the spec by registering the kind, and
the unions are rebuilt when a plugin registers one. Every model forbids unknown keys and
suggests the closest valid key, so ``regx:`` fails with "did you mean 'regex'?" instead of
being silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, model_validator

from connectors.errors import did_you_mean
from pipelines import registry
from pipelines.audience_spec import AudienceSpec, audience_problems
from pipelines.spec_base import DEAD_LETTERS_INPUT, ConfigValue, Name, SpecModel
from pipelines.spec_tests import SpecTestCase


class ParameterSpec(SpecModel):
    """A typed pipeline parameter, substituted wherever ``${name}`` appears in the spec."""

    type: Literal["string", "integer", "number", "boolean", "list", "secret"] = Field(
        default="string",
        description="secret: a secret reference, never the value: env:VAR, file:/path, or "
        "{store: {type: gcp|aws|vault|..., ...}, name: NAME, ref: current}",
    )
    default: Any = None
    description: str = ""
    required: bool = False
    choices: list[Any] | None = None


class DeadLetterSpec(SpecModel):
    """Where rejected rows go: a directory of files the run owns (default), or a Kafka topic.

    The Kafka form (``type: kafka``) sends each dead letter as one JSON message (the record
    envelope of :mod:`connectors.records`) keyed by its source position, as Google's Kafka
    templates' dead-letter topics do; it suits streaming pipelines, where rejections should be
    consumable as they happen.
    """

    type: Literal["file", "kafka"] = "file"
    path: str | None = Field(default=None, description="Directory for dead-letter files.")
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
    bootstrap_servers: str | None = Field(default=None, description="Kafka: host:port[,...].")
    topic: str | None = Field(default=None, description="Kafka: the dead-letter topic.")
    producer_config: dict[str, ConfigValue] = Field(
        default_factory=dict, description="Kafka: librdkafka properties (secrets as references)."
    )
    audience: Name | None = Field(
        default=None,
        description="Who reads the dead letters (a governance.audiences name): the fields any "
        "mask rule masks for that audience are redacted in them.",
    )

    @model_validator(mode="after")
    def _destination(self) -> DeadLetterSpec:
        if self.type == "file":
            if not self.path:
                raise ValueError("dead_letter needs a 'path' (or type: kafka with a topic)")
            if self.topic or self.bootstrap_servers or self.producer_config:
                raise ValueError("topic, bootstrap_servers and producer_config are for type: kafka")
        else:
            if not (self.topic and self.bootstrap_servers):
                raise ValueError("a kafka dead_letter needs 'bootstrap_servers' and 'topic'")
            if self.path:
                raise ValueError("a kafka dead_letter writes to its topic; remove 'path'")
        return self


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
    triggering_frequency: int = Field(
        default=60,
        ge=1,
        description="Streaming only: seconds between the panes in which file sinks, reports and "
        "dead letters write rows that no window step placed in event-time windows (Beam's "
        "WriteToFiles triggering_frequency; whole seconds, as Beam's trigger protocol carries them).",
    )
    temp_location: str | None = Field(
        default=None,
        description="Where run artifacts (column profiles) go; default: the system temp dir. "
        "Use a gs:// path on Dataflow.",
    )

    def needed_extras(self) -> tuple[str, ...]:
        """The dataflow runner is Beam's GCP modules (the gcp extra)."""
        return ("gcp",) if self.runner == "dataflow" else ()

    publish: Literal["driver", "pipeline"] = Field(
        default="driver",
        description="Who publishes a bounded run's staged outputs: the driver after the run's "
        "checks (default), or the pipeline's last step after the error-threshold check, for jobs "
        "no driver waits for (Flex Templates, run --detach): see connectors/pipeline_publish.py.",
    )

    allow_local_secrets: bool = Field(
        default=False,
        description="Allow env and file secrets on runners whose workers are other processes "
        "(Flink, Dataflow, portable with workers elsewhere): only when the workers have them too.",
    )

    def profile_dir(self, run_id: str) -> str:
        """Where the run's partial column profiles go (read back by lineage after the run):
        ``temp_location``, else the runner's ``temp_location`` option, else the system's."""
        import tempfile
        from pathlib import Path

        base = (
            self.temp_location
            or self.runner_options.get("temp_location")
            or str(Path(tempfile.gettempdir()) / "beamwright-runs")
        )
        return f"{base.rstrip('/')}/{run_id}/profiles"


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
    clearance_levels: list[str] = Field(
        default_factory=list,
        description="The ordered clearance scale, lowest first, e.g. [public, internal, "
        "confidential, secret, top_secret]: what security_level_below compares on.",
    )
    audiences: dict[Name, AudienceSpec] = Field(
        default_factory=dict,
        description="Who reads outputs, by attributes (clearance, region, department, "
        "access_level, roles, attributes); each sink names one with 'audience', and mask rules "
        "with 'when' apply per audience (see docs/architecture.md, Audiences).",
    )
    require_audience: bool = Field(
        default=False,
        description="Refuse a sink (the dead letters too) that carries classified fields "
        "and names no audience.",
    )


class LineageSettings(SpecModel):
    namespace: str = "beamwright"
    run_as: str | None = Field(
        default=None,
        description="Who runs this, recorded as the run's principal (what 'run --as' sets; "
        "'service:NAME' for a service account). Default: $BEAMWRIGHT_PRINCIPAL, else the CI "
        "system's user, else the OS user (pipelines/principal.py).",
    )
    heartbeat_seconds: float = Field(
        default=60.0, gt=0, description="Interval of RUNNING events for streaming/continuous runs."
    )
    event_log: str | None = Field(
        default=None,
        description="JSONL file for OpenLineage events when no OpenLineage transport is "
        "configured (default: lineage/events.jsonl in the folder holding the spec's local "
        "outputs; beamwright-output/lineage/events.jsonl when it has none).",
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


def _union(role: str) -> Any:
    models = tuple(kind.model for kind in registry.kinds(role).values())
    return Annotated[Union[models], Field(discriminator="type")]  # noqa: UP007 - built at run time


class PipelineSpec(SpecModel):
    name: Name
    description: str = ""
    version: str = "1"
    owner: str | None = None
    template: str | None = Field(default=None, description="Template that produced this spec.")
    parameters: dict[str, ParameterSpec] = Field(default_factory=dict)
    plugins: list[str] = Field(
        default_factory=list,
        description="Modules defining extra source/step/sink kinds (a module-level KIND or "
        "KINDS), imported before the rest of the spec is read.",
    )
    run: RunSettings = Field(default_factory=RunSettings)
    sources: list[_union("source")] = Field(min_length=1)  # type: ignore[valid-type]
    steps: list[_union("step")] = Field(default_factory=list)  # type: ignore[valid-type]
    sinks: list[_union("sink")] = Field(min_length=1)  # type: ignore[valid-type]
    dead_letter: DeadLetterSpec
    lineage: LineageSettings = Field(default_factory=LineageSettings)
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    tests: list[SpecTestCase] = Field(
        default_factory=list,
        description="Named test cases (mocked inputs, expected outputs) run by beamwright "
        "test; runs ignore them.",
    )

    @model_validator(mode="after")
    def _graph(self) -> PipelineSpec:
        check_graph(self)
        for i, sink in enumerate(self.sinks):
            registry.kind_of(sink).settle(sink, f"sinks[{i}]", self)
        check_outputs(self)
        problems = audience_problems(
            self.governance.audiences,
            self.governance.clearance_levels,
            [(f"sinks[{i}].audience", sink.audience) for i, sink in enumerate(self.sinks)]
            + [("dead_letter.audience", self.dead_letter.audience)],
            list(conditions(self)),
        )
        if problems:
            raise ValueError(problems[0])
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


def _rebuild_unions() -> None:
    """A kind was registered: let specs use it (the unions are rebuilt from the registry)."""
    for name, role in (("sources", "source"), ("steps", "step"), ("sinks", "sink")):
        PipelineSpec.model_fields[name].annotation = list[_union(role)]  # type: ignore[valid-type]
    PipelineSpec.model_rebuild(force=True)


registry.on_change(_rebuild_unions)


# --------------------------------------------------------------------------- wiring


def step_inputs(spec: PipelineSpec) -> Iterator[tuple[int, Any, list[str]]]:
    """(index, step, the names it reads), in order: the one statement of the wiring rules.

    A step reads its ``input`` (source or step names); by default the previous step, or for
    the first step every source that no step reads explicitly and none reads as a side input
    (a lookup's table), flattened.
    """
    previous = main_sources(spec)
    for i, step in enumerate(spec.steps):
        yield i, step, step.inputs or previous
        previous = [step.name]


def main_sources(spec: PipelineSpec) -> list[str]:
    """The sources the first step reads by default."""
    taken = side_input_sources(spec) | {n for step in spec.steps for n in step.inputs}
    return [src.name for src in spec.sources if src.name not in taken] or [spec.sources[0].name]


def side_input_sources(spec: PipelineSpec) -> set[str]:
    """Sources that steps read as side inputs (lookup tables)."""
    return {n for step in spec.steps for n in registry.kind_of(step).side_inputs(step)}


def sink_inputs(spec: PipelineSpec) -> Iterator[tuple[int, Any, list[str]]]:
    """(index, sink, the names it reads): its ``input``, by default the last step (or the
    main sources when there are no steps). ``dead_letters`` reads the run's dead letters."""
    last = [spec.steps[-1].name] if spec.steps else main_sources(spec)
    for i, sink in enumerate(spec.sinks):
        yield i, sink, [sink.input] if sink.input else last


def row_edges(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(producer, consumer) for every edge rows travel on, from the wiring rules above: each
    step's and sink's main inputs (a join's two sides included; a fan-out is one edge per
    consumer). Side inputs (a lookup's table) are read whole, not passed on, so they are no
    edge, unless the step counts their rows in (reconcile's target:
    ``Kind.counts_side_inputs``); the dead-letter sinks read the run's dead letters. The run
    summary checks every consumer receives what its producers emitted on these edges."""
    edges = [(name, step.name) for _, step, names in step_inputs(spec) for name in names]
    edges += [  # side inputs whose rows the step counts in (Kind.counts_side_inputs)
        (name, step.name)
        for step in spec.steps
        if registry.kind_of(step).counts_side_inputs
        for name in registry.kind_of(step).side_inputs(step)
    ]
    edges += [
        (name, sink.name)
        for _, sink, names in sink_inputs(spec)
        if names != [DEAD_LETTERS_INPUT]
        for name in names
    ]
    return edges


def combining_steps(spec: PipelineSpec) -> list[str]:
    """Steps whose ``rows_out`` counts input rows, not the rows they pass on, and sinks that
    write aggregates of what they receive (``Kind.combines``)."""
    nodes = [*spec.steps, *spec.sinks]
    return [node.name for node in nodes if registry.kind_of(node).combines]


def classifications(spec: PipelineSpec) -> dict[str, str]:
    """Field -> classification: ``governance.fields``, then what nodes declare (validate
    field classifications)."""
    out = dict(spec.governance.fields)
    for node in (*spec.sources, *spec.steps, *spec.sinks):
        for name, classification in registry.kind_of(node).classifications(node).items():
            out.setdefault(name, classification)
    return out


def classified_fields(spec: PipelineSpec) -> set[str]:
    """Fields the spec classifies above its default classification (e.g. PII)."""
    default = spec.governance.classification
    return {name for name, c in classifications(spec).items() if c != default}


def conditions(spec: PipelineSpec) -> Iterator[tuple[str, Any]]:
    """(spec path, :class:`~pipelines.audience_spec.ConditionSpec`) of every audience
    condition in ``spec`` (mask rules' ``when``)."""
    for i, step in enumerate(spec.steps):
        for j, rule in registry.kind_of(step).masks(step):
            if rule.when is not None:
                yield f"steps[{i}].fields[{j}].when", rule.when


def expressions(spec: PipelineSpec) -> Iterator[tuple[str, str]]:
    """(spec path, text) of every expression in ``spec``."""
    for role, nodes in (("sources", spec.sources), ("steps", spec.steps), ("sinks", spec.sinks)):
        for i, node in enumerate(nodes):
            for sub, text in registry.kind_of(node).expressions(node):
                yield f"{role}[{i}].{sub}", text


def check_graph(spec: PipelineSpec) -> None:
    """Names are unique and every ``input`` / side input names something defined earlier."""
    seen: dict[str, str] = {}
    for kind, nodes in (("source", spec.sources), ("step", spec.steps), ("sink", spec.sinks)):
        for i, node in enumerate(nodes):
            if node.name in seen:
                raise ValueError(
                    f"{kind}s[{i}].name: '{node.name}' is already the name of a {seen[node.name]}"
                )
            seen[node.name] = kind
    sources = {s.name for s in spec.sources}
    available = set(sources)
    for i, step in enumerate(spec.steps):
        for ref in step.inputs:
            if ref not in available:
                raise ValueError(_unknown_ref(f"steps[{i}].input", ref, available))
        for ref in registry.kind_of(step).side_inputs(step):
            if ref not in sources:
                raise ValueError(_unknown_ref(f"steps[{i}]", ref, sources))
        available.add(step.name)
    available.add(DEAD_LETTERS_INPUT)
    for i, sink in enumerate(spec.sinks):
        if sink.input is not None and sink.input not in available:
            raise ValueError(_unknown_ref(f"sinks[{i}].input", sink.input, available))


def check_outputs(spec: PipelineSpec) -> None:
    """No two outputs share or nest paths, and none lies inside an input glob."""
    from pipelines.output_paths import Output, overlaps

    outputs = []
    inputs = []
    for role, nodes in (("sources", spec.sources), ("sinks", spec.sinks)):
        for i, node in enumerate(nodes):
            for sub, path, is_file in registry.kind_of(node).paths(node):
                where = f"{role}[{i}].{sub}"
                if role == "sources":
                    inputs.append((where, path))
                else:
                    outputs.append(Output(where, f"sink '{node.name}'", path, is_file))
    if spec.dead_letter.path:
        outputs.append(Output("dead_letter.path", "the dead letters", spec.dead_letter.path, False))
    problems = list(overlaps(outputs, inputs))
    if problems:
        raise ValueError(problems[0])


def default_event_log(spec: PipelineSpec) -> str | None:
    """Where a run's OpenLineage events go when neither ``lineage.event_log``, ``--event-log``
    nor an OpenLineage transport says: ``lineage/events.jsonl`` in the folder holding the
    spec's local outputs (sinks and dead letters: their common folder, the one above a single
    output), as templates put it under ``output_dir``. None when the spec has no local output
    (the caller then keeps its own default). Never the current directory by accident: only
    when the spec's outputs are there."""
    import os

    from pipelines.output_paths import components

    paths = [path for _, path, _ in _output_paths(spec) if "://" not in path]
    if not paths:
        return None
    parts = [components(path) for path in paths]
    common = parts[0]
    for other in parts[1:]:
        n = 0
        while n < min(len(common), len(other)) and common[n] == other[n]:
            n += 1
        common = common[:n]
    if common in parts:  # one output (or one holding the others): beside it
        common = common[:-1]
    if len(common) <= 1:  # nothing shared but the file system's root: beside the first one
        common = parts[0][:-1]
    folder = os.path.join(*common)
    return os.path.join(folder, "lineage", "events.jsonl")


def _output_paths(spec: PipelineSpec) -> list[tuple[str, str, bool]]:
    """(where, path, is_file) of every output the spec names: sinks' paths, the dead letters."""
    out = [
        (f"sinks[{i}].{sub}", path, is_file)
        for i, node in enumerate(spec.sinks)
        for sub, path, is_file in registry.kind_of(node).paths(node)
    ]
    if spec.dead_letter.path:
        out.append(("dead_letter.path", spec.dead_letter.path, False))
    return out


def unbounded_sources(spec: PipelineSpec) -> list[str]:
    """Sources that can be unbounded (Kafka): sinks adapt to them (see Kind.settle)."""
    return [src.name for src in spec.sources if registry.kind_of(src).unbounded]


def streaming_sources(spec: PipelineSpec) -> list[str]:
    """Sources that *are* unbounded in this spec (Kafka with ``bounded: null``): the graph is
    then a streaming one, whose sinks write per window and pane."""
    return [
        src.name
        for src in spec.sources
        if registry.kind_of(src).unbounded and getattr(src, "bounded", None) is None
    ]


def _unknown_ref(path: str, ref: str, available: set[str]) -> str:
    hint = did_you_mean(ref, available, listing="defined so far")
    return f"{path}: '{ref}' is not a source or an earlier step; {hint}"


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editors (``beamwright schema``)."""
    schema = PipelineSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "beamwright pipeline spec"
    return schema
