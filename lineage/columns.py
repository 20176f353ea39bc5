"""Column lineage derived from the spec: which input fields feed each output field, and how.

The walk follows the same wiring as the builder: sources, then steps in order, then sinks.
Each field carries its *origins* (input dataset, input field, the transformations applied on
the way). Row-level decisions (validate rules, filter predicates, lookup keys, report
grouping) are dataset-level INDIRECT dependencies, as OpenLineage's column lineage facet
models them. Nothing is evaluated: expressions are parsed for the fields they read.

The result is plain data; :mod:`lineage.facets` turns it into the ``columnLineage`` facet.

The same walk serves spec validation (:mod:`pipelines.checks`): every field a node names is
recorded as a :class:`FieldRead` with the spec path naming it and the fields the rows hold at
that point, and each state knows whether its field set is *complete* (the schema is known: a
source schema was read, a validate step declares every field and drops or rejects the rest, a
``select``, a window's output) or only partly known, where a missing name proves nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from pipelines import spec as s


@dataclass(frozen=True)
class Step:
    """One transformation on the way from an input field to an output field."""

    type: str  # DIRECT | INDIRECT
    subtype: str  # IDENTITY | TRANSFORMATION | AGGREGATION | FILTER | JOIN | GROUP_BY | CONDITIONAL
    description: str = ""
    masking: bool = False


@dataclass(frozen=True)
class Origin:
    source: str  # source node name
    field: str
    steps: tuple[Step, ...] = ()

    def then(self, step: Step) -> Origin:
        return replace(self, steps=(*self.steps, step))


@dataclass
class FieldState:
    """What the rows look like after a node: field -> origins, plus row-level dependencies.

    ``complete`` says the rows have exactly these fields; otherwise they have at least these.
    """

    fields: dict[str, list[Origin]] = field(default_factory=dict)
    dataset: list[Origin] = field(default_factory=list)
    complete: bool = False

    def copy(self) -> FieldState:
        return FieldState(
            {k: list(v) for k, v in self.fields.items()}, list(self.dataset), self.complete
        )


@dataclass(frozen=True)
class FieldRead:
    """A field a spec node names (``field`` as written, struct children dotted), the spec path
    that names it, and the fields of the rows it applies to."""

    path: str
    field: str
    available: frozenset[str]
    complete: bool

    @property
    def missing(self) -> bool:
        """True when the field certainly is not there (only decidable for a complete state)."""
        return self.complete and self.field.split(".")[0] not in self.available


class _Reads(list[FieldRead]):
    def add(self, path: str, names: Iterable[str], state: FieldState) -> None:
        available = frozenset(state.fields)
        self.extend(FieldRead(path, n, available, state.complete) for n in names)


def _union(states: Iterable[FieldState]) -> FieldState:
    states = list(states)
    out = FieldState(complete=bool(states) and all(st.complete for st in states))
    for st in states:
        for name, origins in st.fields.items():
            out.fields.setdefault(name, []).extend(o for o in origins if o not in out.fields[name])
        out.dataset.extend(o for o in st.dataset if o not in out.dataset)
    return out


def _depend(state: FieldState, names: Iterable[str], step: Step) -> None:
    """Record that the rows kept depend on the values of ``names`` (row-level, INDIRECT)."""
    for name in sorted(set(names)):
        for origin in state.fields.get(name.split(".")[0], []):
            dep = origin.then(step)
            if dep not in state.dataset:
                state.dataset.append(dep)


def _declared_types(node: s.ValidateStepSpec) -> dict[str, str]:
    """Field -> type the step declares: its schema file's fields, overridden by inline ones.
    An unreadable schema file declares nothing here; building the step reports it."""
    from pipelines.schemas import SchemaFileError, load_field_types

    types: dict[str, str] = {}
    if node.schema_file:
        with contextlib.suppress(SchemaFileError):
            types = load_field_types(node.schema_file)[0]
    return types | {name: f.type for name, f in node.fields.items()}


def _validate(node: s.ValidateStepSpec, state: FieldState, reads: _Reads, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    types = _declared_types(node)
    for name, type_name in types.items():
        # a declared field is always there afterwards (null when the input lacks it)
        cast = Step("DIRECT", "IDENTITY", f"validated as {type_name}")
        out.fields[name] = [o.then(cast) for o in out.fields.get(name, [])]
    if types and node.additional_fields != "keep":
        out.fields = {k: v for k, v in out.fields.items() if k in types}
        out.complete = True
    rule_fields: set[str] = set(n for n, f in node.fields.items() if f.required)
    for j, rule in enumerate(node.rules):
        if isinstance(rule, s.ExpressionRule):
            names = parse(rule.expr).fields
            reads.add(f"{path}.rules[{j}].expr", sorted(names), out)
            rule_fields |= set(names)
        else:
            reads.add(f"{path}.rules[{j}].field", [rule.field], out)
            rule_fields.add(rule.field)
    _depend(out, rule_fields, Step("INDIRECT", "FILTER", f"{node.name}: validation rules"))
    return out


def _map(node: s.MapStepSpec, state: FieldState, reads: _Reads, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    for old in node.rename:
        reads.add(f"{path}.rename.{old}", [old], state)
    if node.rename:
        out.fields = {node.rename.get(k, k): v for k, v in out.fields.items()}
    for name, type_name in node.cast.items():
        reads.add(f"{path}.cast.{name}", [name], out)
        step = Step("DIRECT", "TRANSFORMATION", f"cast to {type_name}")
        out.fields[name] = [o.then(step) for o in out.fields.get(name, [])]
    before = {k: list(v) for k, v in out.fields.items()}
    derive_input = out.copy()
    for name, text in node.derive.items():
        expr = parse(text)
        reads.add(f"{path}.derive.{name}", sorted(expr.fields), derive_input)
        if expr.identity_field is not None:
            step = Step("DIRECT", "IDENTITY", f"{name} = {text}")
            out.fields[name] = [o.then(step) for o in before.get(expr.identity_field, [])]
            continue
        origins: list[Origin] = []
        direct = Step("DIRECT", "TRANSFORMATION", f"{name} = {text}")
        for f in sorted(expr.direct_fields):
            origins += [o.then(direct) for o in before.get(f.split(".")[0], [])]
        indirect = Step("INDIRECT", "CONDITIONAL", f"{name} = {text}")
        for f in sorted(expr.indirect_fields):
            origins += [o.then(indirect) for o in before.get(f.split(".")[0], [])]
        out.fields[name] = origins
    for j, name in enumerate(node.drop):
        reads.add(f"{path}.drop[{j}]", [name], out)
    for name in node.drop:
        out.fields.pop(name, None)
    if node.select is not None:
        for j, name in enumerate(node.select):
            reads.add(f"{path}.select[{j}]", [name], out)
        out.fields = {k: out.fields.get(k, []) for k in node.select}
        out.complete = True
    return out


def _filter(node: s.FilterStepSpec, state: FieldState, reads: _Reads, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    names = parse(node.where).fields
    reads.add(f"{path}.where", sorted(names), state)
    _depend(out, names, Step("INDIRECT", "FILTER", f"{node.name}: {node.where}"))
    return out


def _mask(node: s.MaskStepSpec, state: FieldState, reads: _Reads, path: str) -> FieldState:
    out = state.copy()
    for j, m in enumerate(node.fields):
        reads.add(f"{path}.fields[{j}].field", [m.field], state)
        step = Step("DIRECT", "TRANSFORMATION", f"masked: {m.strategy}", masking=True)
        top = m.field.split(".")[0]
        out.fields[top] = [o.then(step) for o in out.fields.get(top, [])]
    return out


def _lookup(
    node: s.LookupStepSpec, state: FieldState, lookup: FieldState, reads: _Reads, path: str
) -> FieldState:
    out = state.copy()
    reads.add(f"{path}.on", node.keys, state)
    reads.add(f"{path}.on (in {node.lookup})", node.keys, lookup)
    for j, name in enumerate(node.fields or []):
        reads.add(f"{path}.fields[{j}]", [name], lookup)
    for name in node.cast:
        reads.add(f"{path}.cast.{name}", [name], lookup)
    if node.fields is None and not lookup.complete:
        out.complete = False  # it adds every lookup field, and those are not all known
    wanted = node.fields or [f for f in lookup.fields if f not in node.keys]
    for name in wanted:
        kind = "TRANSFORMATION" if name in node.cast else "IDENTITY"
        step = Step("DIRECT", kind, f"looked up from {node.lookup} on {'+'.join(node.keys)}")
        out.fields[node.prefix + name] = [o.then(step) for o in lookup.fields.get(name, [])]
    join = Step("INDIRECT", "JOIN", f"{node.name}: join on {'+'.join(node.keys)}")
    _depend(out, node.keys, join)
    for key in node.keys:
        for origin in lookup.fields.get(key, []):
            dep = origin.then(join)
            if dep not in out.dataset:
                out.dataset.append(dep)
    if node.on_missing != "keep":
        _depend(out, node.keys, Step("INDIRECT", "FILTER", f"{node.name}: rows without a match"))
    return out


def _metric_field(text: str) -> str | None:
    """The field a report/window metric aggregates (``sum(amount)`` -> amount; count: None)."""
    match = s.METRIC_PATTERN.match(text.strip())
    return match.group(3) if match else None


def _report(
    node: s.ReportSinkSpec | s.WindowStepSpec, state: FieldState, reads: _Reads, path: str
) -> FieldState:
    out = FieldState(dataset=list(state.dataset), complete=True)
    for j, key in enumerate(node.group_by):
        reads.add(f"{path}.group_by[{j}]", [key], state)
    group = Step("INDIRECT", "GROUP_BY", f"grouped by {', '.join(node.group_by)}")
    for key in node.group_by:
        out.fields[key] = [
            o.then(Step("DIRECT", "IDENTITY", "group key")) for o in state.fields.get(key, [])
        ]
        out.dataset += [
            o.then(group) for o in state.fields.get(key, []) if o.then(group) not in out.dataset
        ]
    for column, text in node.metrics.items():
        metric_field = _metric_field(text)
        if metric_field is None:
            out.fields[column] = []
            continue
        reads.add(f"{path}.metrics.{column}", [metric_field], state)
        step = Step("DIRECT", "AGGREGATION", text.strip())
        out.fields[column] = [o.then(step) for o in state.fields.get(metric_field.split(".")[0], [])]
    return out


@dataclass
class SpecWalk:
    """The walk's result: the rows' state after every node (sinks and dead letters too), and
    every field a node names."""

    states: dict[str, FieldState]
    reads: list[FieldRead]


def walk(
    spec: s.PipelineSpec,
    source_fields: Mapping[str, Iterable[str]],
    complete_sources: Iterable[str] = (),
) -> SpecWalk:
    """Walk ``spec`` given each source's field names; ``complete_sources`` are the sources
    whose names are all of their fields (their schema is known)."""
    complete = set(complete_sources)
    states: dict[str, FieldState] = {
        name: FieldState({f: [Origin(name, f)] for f in fields}, complete=name in complete)
        for name, fields in source_fields.items()
    }
    reads = _Reads()
    lookups = {st.lookup for st in spec.steps if isinstance(st, s.LookupStepSpec)}
    explicit = {
        n
        for st in spec.steps
        if st.input
        for n in ([st.input] if isinstance(st.input, str) else st.input)
    }
    previous = [src.name for src in spec.sources if src.name not in lookups | explicit] or [
        spec.sources[0].name
    ]
    for i, step in enumerate(spec.steps):
        path = f"steps[{i}]"
        names = [step.input] if isinstance(step.input, str) else (step.input or previous)
        state = _union(states.get(n, FieldState()) for n in names)
        if isinstance(step, s.ValidateStepSpec):
            state = _validate(step, state, reads, path)
        elif isinstance(step, s.MapStepSpec):
            state = _map(step, state, reads, path)
        elif isinstance(step, s.FilterStepSpec):
            state = _filter(step, state, reads, path)
        elif isinstance(step, s.MaskStepSpec):
            state = _mask(step, state, reads, path)
        elif isinstance(step, s.WindowStepSpec):
            if step.event_time:
                reads.add(f"{path}.event_time", [step.event_time], state)
            state = _report(step, state, reads, path)
            for name in ("window_start", "window_end", "pane_timing", "pane_index"):
                state.fields[name] = []
        elif isinstance(step, s.LookupStepSpec):
            lookup = states.get(step.lookup, FieldState())
            state = _lookup(step, state, lookup, reads, path)
        elif isinstance(step, s.BatchStepSpec):
            for j, key in enumerate(step.key):
                reads.add(f"{path}.key[{j}]", [key], state)
        states[step.name] = state
        previous = [step.name]
    dead = _dead_letters(states, redacted=spec.dead_letter.redact)
    states[s.DEAD_LETTERS_INPUT] = dead
    for i, sink in enumerate(spec.sinks):
        path = f"sinks[{i}]"
        names = [sink.input] if sink.input else previous
        upstream = _union(states.get(n, FieldState()) for n in names)
        if isinstance(sink, s.ReportSinkSpec):
            upstream = _report(sink, upstream, reads, path)
        elif isinstance(sink, s.KafkaSinkSpec) and sink.key_field:
            reads.add(f"{path}.key_field", [sink.key_field], upstream)
        states[sink.name] = upstream
    return SpecWalk(states, list(reads))


def sink_lineage(
    spec: s.PipelineSpec, source_fields: Mapping[str, list[str]]
) -> dict[str, FieldState]:
    """Field states for every sink and for the dead letters, given each source's field names."""
    states = walk(spec, source_fields).states
    names = [s.DEAD_LETTERS_INPUT, *(sink.name for sink in spec.sinks)]
    return {name: states[name] for name in names}


DEAD_LETTER_FIELDS = (
    "timestamp",
    "errorMessage",
    "stacktrace",
    "step",
    "rule",
    "run_id",
    "source",
    "offset",
    "attributes",
)


def _dead_letters(states: Mapping[str, FieldState], *, redacted: bool) -> FieldState:
    """Dead letters keep each rejected record whole: the payload derives from every field of
    every node that can reject, so it is as sensitive as the most sensitive of them."""
    if redacted:
        step = Step("DIRECT", "TRANSFORMATION", "masked: redact", masking=True)
    else:
        step = Step("DIRECT", "TRANSFORMATION", "rejected record kept as the dead-letter payload")
    payload: list[Origin] = []
    for state in states.values():
        for origins in state.fields.values():
            for origin in origins:
                root = Origin(origin.source, origin.field).then(step)
                if root not in payload:
                    payload.append(root)
    fields: dict[str, list[Origin]] = {name: [] for name in DEAD_LETTER_FIELDS}
    fields["payloadString"] = payload
    fields["payloadBytes"] = list(payload)
    return FieldState(fields, complete=True)
