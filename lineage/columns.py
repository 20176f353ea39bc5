"""Column lineage as data: which input fields feed each field of the rows, and how.

Each field carries its *origins* (input dataset, input field, the transformations applied on
the way). Row-level decisions (validate rules, filter predicates, lookup keys, report
grouping) are dataset-level INDIRECT dependencies, as OpenLineage's column lineage facet
models them. A :class:`FieldState` is the rows' fields after one node; each kind's lineage
rule (in its kind module) maps the state before the node to the state after it, and
:mod:`pipelines.column_lineage` walks a spec with those rules. :mod:`lineage.facets` turns
the result into the ``columnLineage`` facet.

A state also knows whether its field set is *complete* (the schema is known) or only partly
known, where a missing name proves nothing; :class:`FieldRead` records a field a node names,
for ``beamwright validate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Step:
    """One transformation on the way from an input field to an output field."""

    type: str  # DIRECT | INDIRECT
    subtype: str  # IDENTITY | TRANSFORMATION | AGGREGATION | FILTER | JOIN | GROUP_BY | CONDITIONAL
    description: str = ""
    masking: bool = False
    protection: str = ""  # with masking: how the values were protected (a mask strategy)


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


def union(states: Iterable[FieldState]) -> FieldState:
    states = list(states)
    out = FieldState(complete=bool(states) and all(st.complete for st in states))
    for st in states:
        for name, origins in st.fields.items():
            out.fields.setdefault(name, []).extend(o for o in origins if o not in out.fields[name])
        out.dataset.extend(o for o in st.dataset if o not in out.dataset)
    return out


def depend(state: FieldState, names: Iterable[str], step: Step) -> None:
    """Record that the rows kept depend on the values of ``names`` (row-level, INDIRECT)."""
    for name in sorted(set(names)):
        for origin in state.fields.get(name.split(".")[0], []):
            dep = origin.then(step)
            if dep not in state.dataset:
                state.dataset.append(dep)


_METRIC_FIELD = re.compile(r"^\w+\(([^)]*)\)$")


def metric_field(text: str) -> str | None:
    """The field a report/window metric aggregates (``sum(amount)`` -> amount; count: None)."""
    match = _METRIC_FIELD.match(text.strip())
    return match.group(1) if match else None


Read = Callable[[str, Iterable[str], "FieldState"], None]
"""``read(path, names, state)``: record that the node at ``path`` names ``names``."""


def aggregate(
    group_by: list[str], metrics: Mapping[str, str], state: FieldState, read: Read, path: str
) -> FieldState:
    """The rows of a grouped aggregate (a report, a window): keys and metric columns."""
    out = FieldState(dataset=list(state.dataset), complete=True)
    for j, key in enumerate(group_by):
        read(f"{path}.group_by[{j}]", [key], state)
    group = Step("INDIRECT", "GROUP_BY", f"grouped by {', '.join(group_by)}")
    for key in group_by:
        out.fields[key] = [
            o.then(Step("DIRECT", "IDENTITY", "group key")) for o in state.fields.get(key, [])
        ]
        out.dataset += [
            o.then(group) for o in state.fields.get(key, []) if o.then(group) not in out.dataset
        ]
    for column, text in metrics.items():
        name = metric_field(text)
        if name is None:
            out.fields[column] = []
            continue
        read(f"{path}.metrics.{column}", [name], state)
        step = Step("DIRECT", "AGGREGATION", text.strip())
        out.fields[column] = [o.then(step) for o in state.fields.get(name.split(".")[0], [])]
    return out


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


def dead_letters(states: Mapping[str, FieldState], *, redacted: bool) -> FieldState:
    """Dead letters keep each rejected record whole: the payload derives from every field of
    every node that can reject, so it is as sensitive as the most sensitive of them."""
    if redacted:
        step = Step("DIRECT", "TRANSFORMATION", "masked: redact", True, "redact")
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
