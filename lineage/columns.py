"""Column lineage derived from the spec: which input fields feed each output field, and how.

The walk follows the same wiring as the builder: sources, then steps in order, then sinks.
Each field carries its *origins* (input dataset, input field, the transformations applied on
the way). Row-level decisions (validate rules, filter predicates, lookup keys, report
grouping) are dataset-level INDIRECT dependencies, as OpenLineage's column lineage facet
models them. Nothing is evaluated: expressions are parsed for the fields they read.

The result is plain data; :mod:`lineage.facets` turns it into the ``columnLineage`` facet.
"""

from __future__ import annotations

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
    """What the rows look like after a node: field -> origins, plus row-level dependencies."""

    fields: dict[str, list[Origin]] = field(default_factory=dict)
    dataset: list[Origin] = field(default_factory=list)

    def copy(self) -> FieldState:
        return FieldState({k: list(v) for k, v in self.fields.items()}, list(self.dataset))


def _union(states: Iterable[FieldState]) -> FieldState:
    out = FieldState()
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


def _validate(node: s.ValidateStepSpec, state: FieldState) -> FieldState:
    out = state.copy()
    declared = set(node.fields)
    for name, spec in node.fields.items():
        if name in out.fields and spec.type:
            cast = Step("DIRECT", "IDENTITY", f"validated as {spec.type}")
            out.fields[name] = [o.then(cast) for o in out.fields[name]]
    if declared and node.additional_fields != "keep":
        out.fields = {k: v for k, v in out.fields.items() if k in declared}
    rule_fields: set[str] = set(n for n, f in node.fields.items() if f.required)
    for rule in node.rules:
        if isinstance(rule, s.ExpressionRule):
            from transforms.expressions import parse

            rule_fields |= set(parse(rule.expr).fields)
        else:
            rule_fields.add(rule.field)
    _depend(out, rule_fields, Step("INDIRECT", "FILTER", f"{node.name}: validation rules"))
    return out


def _map(node: s.MapStepSpec, state: FieldState) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    if node.rename:
        out.fields = {node.rename.get(k, k): v for k, v in out.fields.items()}
    for name, type_name in node.cast.items():
        step = Step("DIRECT", "TRANSFORMATION", f"cast to {type_name}")
        out.fields[name] = [o.then(step) for o in out.fields.get(name, [])]
    before = {k: list(v) for k, v in out.fields.items()}
    for name, text in node.derive.items():
        expr = parse(text)
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
    for name in node.drop:
        out.fields.pop(name, None)
    if node.select is not None:
        out.fields = {k: out.fields.get(k, []) for k in node.select}
    return out


def _filter(node: s.FilterStepSpec, state: FieldState) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    _depend(out, parse(node.where).fields, Step("INDIRECT", "FILTER", f"{node.name}: {node.where}"))
    return out


def _mask(node: s.MaskStepSpec, state: FieldState) -> FieldState:
    out = state.copy()
    for m in node.fields:
        step = Step("DIRECT", "TRANSFORMATION", f"masked: {m.strategy}", masking=True)
        top = m.field.split(".")[0]
        out.fields[top] = [o.then(step) for o in out.fields.get(top, [])]
    return out


def _lookup(node: s.LookupStepSpec, state: FieldState, lookup: FieldState) -> FieldState:
    out = state.copy()
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


def _report(node: s.ReportSinkSpec | s.WindowStepSpec, state: FieldState) -> FieldState:
    from transforms.aggregate import Metric

    out = FieldState(dataset=list(state.dataset))
    group = Step("INDIRECT", "GROUP_BY", f"grouped by {', '.join(node.group_by)}")
    for key in node.group_by:
        out.fields[key] = [
            o.then(Step("DIRECT", "IDENTITY", "group key")) for o in state.fields.get(key, [])
        ]
        out.dataset += [
            o.then(group) for o in state.fields.get(key, []) if o.then(group) not in out.dataset
        ]
    for column, text in node.metrics.items():
        metric = Metric.parse(column, text)
        if metric.field is None:
            out.fields[column] = []
            continue
        step = Step("DIRECT", "AGGREGATION", f"{metric.kind}({metric.field})")
        out.fields[column] = [
            o.then(step) for o in state.fields.get(metric.field.split(".")[0], [])
        ]
    return out


def sink_lineage(
    spec: s.PipelineSpec, source_fields: Mapping[str, list[str]]
) -> dict[str, FieldState]:
    """Field states for every sink and for the dead letters, given each source's field names."""
    states: dict[str, FieldState] = {
        name: FieldState({f: [Origin(name, f)] for f in fields})
        for name, fields in source_fields.items()
    }
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
    for step in spec.steps:
        names = [step.input] if isinstance(step.input, str) else (step.input or previous)
        state = _union(states.get(n, FieldState()) for n in names)
        if isinstance(step, s.ValidateStepSpec):
            state = _validate(step, state)
        elif isinstance(step, s.MapStepSpec):
            state = _map(step, state)
        elif isinstance(step, s.FilterStepSpec):
            state = _filter(step, state)
        elif isinstance(step, s.MaskStepSpec):
            state = _mask(step, state)
        elif isinstance(step, s.WindowStepSpec):
            state = _report(step, state)
            for name in ("window_start", "window_end", "pane_timing", "pane_index"):
                state.fields[name] = []
        elif isinstance(step, s.LookupStepSpec):
            state = _lookup(step, state, states.get(step.lookup, FieldState()))
        states[step.name] = state
        previous = [step.name]
    dead = _dead_letters(states, redacted=spec.dead_letter.redact)
    states[s.DEAD_LETTERS_INPUT] = dead
    result: dict[str, FieldState] = {s.DEAD_LETTERS_INPUT: dead}
    for sink in spec.sinks:
        names = [sink.input] if sink.input else previous
        upstream = _union(states.get(n, FieldState()) for n in names)
        result[sink.name] = (
            _report(sink, upstream) if isinstance(sink, s.ReportSinkSpec) else upstream
        )
    return result


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
    return FieldState(fields)
