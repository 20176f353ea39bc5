"""Column lineage of a spec: walk its nodes with each kind's lineage rule.

The walk follows the wiring the builder uses (:func:`pipelines.spec.step_inputs`): sources,
then steps in order, then sinks. Each kind module says how its node changes the rows' fields
(:attr:`pipelines.registry.Kind.lineage`), so a new kind brings its own rule and none can be
silently treated as a pass-through by a list kept elsewhere. Nothing is evaluated:
expressions are parsed for the fields they read.

The same walk serves ``beamwright validate``: every field a node names is recorded as a
:class:`lineage.columns.FieldRead`, with the spec path naming it and the fields the rows hold
at that point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from connectors.errors import closest
from lineage.columns import FieldRead, FieldState, Origin, dead_letters, union
from pipelines import registry
from pipelines import spec as s
from pipelines.audience_masks import dead_letter_fields, with_audience_masks


@dataclass
class SpecWalk:
    """The walk's result and context: the rows' state after every node (sinks and dead
    letters too), and every field a node names. Kind rules call :meth:`read` and
    :meth:`state`."""

    states: dict[str, FieldState] = field(default_factory=dict)
    reads: list[FieldRead] = field(default_factory=list)

    def read(self, path: str, names: Iterable[str], state: FieldState) -> None:
        """Record that the node at ``path`` names the fields ``names`` of rows in ``state``."""
        available = frozenset(state.fields)
        self.reads.extend(FieldRead(path, n, available, state.complete) for n in names)

    def state(self, name: str) -> FieldState:
        """The rows' state after the node ``name`` (empty when unknown)."""
        return self.states.get(name, FieldState())


def walk(
    spec: s.PipelineSpec,
    source_fields: Mapping[str, Iterable[str]],
    complete_sources: Iterable[str] = (),
) -> SpecWalk:
    """Walk ``spec`` given each source's field names; ``complete_sources`` are the sources
    whose names are all of their fields (their schema is known)."""
    complete = set(complete_sources)
    result = SpecWalk(
        {
            name: FieldState({f: [Origin(name, f)] for f in fields}, complete=name in complete)
            for name, fields in source_fields.items()
        }
    )
    for i, step, names in s.step_inputs(spec):
        state = union(result.state(n) for n in names)
        result.states[step.name] = registry.kind_of(step).lineage(
            step, state, result, f"steps[{i}]"
        )
    result.states[s.DEAD_LETTERS_INPUT] = dead_letters(
        result.states,
        redacted=spec.dead_letter.redact
        or bool(dead_letter_fields(spec, spec.dead_letter.audience)),
    )
    for i, sink, names in s.sink_inputs(spec):
        upstream = union(result.state(n) for n in names)
        if names != [s.DEAD_LETTERS_INPUT]:  # the rows as the sink's audience gets them
            upstream = with_audience_masks(spec, names, sink.audience, upstream)
        result.states[sink.name] = registry.kind_of(sink).lineage(
            sink, upstream, result, f"sinks[{i}]"
        )
    return result


def sink_lineage(
    spec: s.PipelineSpec, source_fields: Mapping[str, list[str]]
) -> dict[str, FieldState]:
    """Field states for every sink and for the dead letters, given each source's field names."""
    states = walk(spec, source_fields).states
    names = [s.DEAD_LETTERS_INPUT, *(sink.name for sink in spec.sinks)]
    return {name: states[name] for name in names}


def declared_fields(spec: s.PipelineSpec, source: str) -> dict[str, str]:
    """Field -> type that the steps reading ``source`` directly declare (a validate step's
    ``fields``): how lineage describes a source whose own schema is unknown (a JSON Kafka
    topic). The first step declaring a field gives its type."""
    declared: dict[str, str] = {}
    for _, step, names in s.step_inputs(spec):
        if source in names:
            for name, type_name in registry.kind_of(step).declared_fields(step).items():
                declared.setdefault(name, type_name)
    return declared


_HIDDEN_PREFIX = "_bw_"  # position columns: never shown to users as fields


def unknown_field(path: str, name: str, available: frozenset[str] | list[str]) -> str:
    """``path: unknown field 'x'; did you mean 'y'?`` (internal columns never suggested)."""
    visible = sorted(f for f in available if not f.startswith(_HIDDEN_PREFIX))
    top = name.split(".")[0]
    if top.startswith(_HIDDEN_PREFIX):
        return f"{path}: '{name}' is an internal column, not a field of the data"
    guess = closest(top, visible)
    if guess:
        hint = f"did you mean '{guess}'?"
    elif visible:
        hint = "fields here: " + ", ".join(visible[:20]) + (", ..." if len(visible) > 20 else "")
    else:
        hint = "the rows have no fields here"
    return f"{path}: unknown field '{name}'; {hint}"
