"""Which mask rules each output gets, decided when the pipeline is built.

A mask rule with ``when:`` (:mod:`pipelines.audience_spec`) is not applied by its step: the
builder puts, before each sink, one plain :class:`transforms.mask.Mask` of the conditional
rules that hold for the sink's audience, built by the mask step's own ``mask_transform``, so
it is exactly the unconditional mask a user would write for that audience and a condition
costs nothing per row. Sinks reading the same rows with the same effective masking share one
transform: rows are masked once per distinct masking, not once per sink. Dead letters hold
original records, whose fields cannot be partially masked in place, so a dead-letter reader's
audience gets every field masked for it *redacted* instead.

Two rules keep this sound, checked by ``validate`` and before a run (:func:`problems`):
a step downstream of a conditional rule must not read the field it masks (it would compute
from the exact value for every audience, and a derived field would carry it past the mask),
and with ``governance.require_audience`` every output that may carry classified fields names
its audience. No Beam here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lineage.columns import FieldState, Step
from pipelines import registry
from pipelines import spec as s
from pipelines.audience_spec import AudienceSpec, holds


@dataclass(frozen=True)
class Rule:
    """One mask rule where the spec has it: step index, step name, field index, rule."""

    step: int
    step_name: str
    index: int
    rule: Any  # a mask rule: field, strategy, when (pipelines.steps.mask.MaskFieldSpec)

    @property
    def key(self) -> tuple[int, int]:
        return self.step, self.index

    @property
    def top(self) -> str:
        return self.rule.field.split(".")[0]


def mask_rules(spec: s.PipelineSpec) -> Iterator[Rule]:
    """Every mask rule of the spec, in step order."""
    for i, step in enumerate(spec.steps):
        for j, rule in registry.kind_of(step).masks(step):
            yield Rule(i, step.name, j, rule)


def masking_step(rule: Any) -> Step:
    """The column-lineage mark of a field masked by ``rule``."""
    return Step("DIRECT", "TRANSFORMATION", f"masked: {rule.strategy}", True, rule.strategy)


def audience(spec: s.PipelineSpec, name: str | None) -> AudienceSpec | None:
    return spec.governance.audiences.get(name) if name is not None else None


def applies(spec: s.PipelineSpec, rule: Any, audience_name: str | None) -> bool:
    """Whether ``rule`` masks the output of the audience ``audience_name`` (no audience: every
    conditional rule applies, the strictest view)."""
    if rule.when is None:
        return True
    return holds(rule.when, audience(spec, audience_name), spec.governance.clearance_levels)


def upstream_steps(spec: s.PipelineSpec, names: Iterable[str]) -> set[int]:
    """Indices of the steps whose rows reach ``names`` (node names), transitively."""
    inputs = {step.name: (i, reads) for i, step, reads in s.step_inputs(spec)}
    found: set[int] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in inputs and inputs[name][0] not in found:
            found.add(inputs[name][0])
            todo.extend(inputs[name][1])
    return found


def sink_rules(spec: s.PipelineSpec, names: list[str], audience_name: str | None) -> list[Rule]:
    """The conditional rules an output reading ``names`` gets for its audience, in step
    order: what its per-audience mask applies."""
    upstream = upstream_steps(spec, names)
    return [
        r
        for r in mask_rules(spec)
        if r.rule.when is not None and r.step in upstream and applies(spec, r.rule, audience_name)
    ]


def dead_letter_fields(spec: s.PipelineSpec, audience_name: str | None) -> set[str]:
    """Fields redacted in the dead letters a reader of ``audience_name`` gets: every field a
    mask rule masks for that audience (none when the spec has no conditional rule and no
    audience: dead letters then keep originals, as before audiences existed)."""
    rules = list(mask_rules(spec))
    if audience_name is None and not any(r.rule.when for r in rules):
        return set()
    return {r.top for r in rules if applies(spec, r.rule, audience_name)}


def with_audience_masks(
    spec: s.PipelineSpec, names: list[str], audience_name: str | None, state: FieldState
) -> FieldState:
    """``state`` (the rows reaching a sink) with the masking marks of its audience's
    conditional rules: the column lineage of each output shows its own masking."""
    rules = sink_rules(spec, names, audience_name)
    if not rules:
        return state
    out = state.copy()
    for r in rules:
        out.fields[r.top] = [o.then(masking_step(r.rule)) for o in out.fields.get(r.top, [])]
    return out


def masked_fields(state: FieldState) -> list[str]:
    """The fields of an output whose values some mask changed on the way (lineage marks)."""
    return sorted(
        name
        for name, origins in state.fields.items()
        if any(st.masking for o in origins for st in o.steps)
    )


# --------------------------------------------------------------------------- checks


def problems(spec: s.PipelineSpec, walked: Any) -> list[str]:
    """What makes audience masking unsound for ``spec``, given its column-lineage walk
    (:func:`pipelines.column_lineage.walk`, with every source holding every classified
    field: see :func:`classified_walk_fields`)."""
    return _downstream_reads(spec, walked) + _missing_audiences(spec, walked)


def classified_walk_fields(spec: s.PipelineSpec) -> dict[str, list[str]]:
    """Source -> fields for the checks' walk: as if every source had every classified field,
    so "may carry classified fields" errs on the side of asking for an audience."""
    classified = sorted(s.classified_fields(spec) | {r.top for r in mask_rules(spec)})
    return {src.name: classified for src in spec.sources}


def _downstream_reads(spec: s.PipelineSpec, walked: Any) -> list[str]:
    out = []
    conditional = [r for r in mask_rules(spec) if r.rule.when is not None]
    for i, step, _ in s.step_inputs(spec):
        for r in conditional:
            if registry.kind_of(step).masks(step) or r.step not in upstream_steps(
                spec, [step.name]
            ):
                continue  # masking a field again reveals nothing
            for read in walked.reads:
                if read.path.startswith(f"steps[{i}].") and read.field.split(".")[0] == r.top:
                    out.append(
                        f"{read.path}: reads '{read.field}', which steps[{r.step}] "
                        f"('{r.step_name}') masks per audience (fields[{r.index}].when), so this "
                        f"step would compute from the exact value for every audience; move the "
                        f"mask step after '{step.name}', or drop the rule's 'when'"
                    )
                    break
    return out


def _missing_audiences(spec: s.PipelineSpec, walked: Any) -> list[str]:
    if not spec.governance.require_audience:
        return []
    classified = set(s.classified_fields(spec))
    if not classified:
        return []
    hint = ", ".join(sorted(spec.governance.audiences)) or "declare governance.audiences first"
    out = []
    for i, sink, _ in s.sink_inputs(spec):
        if sink.audience is not None:
            continue
        state = walked.states.get(sink.name, FieldState())
        carried = sorted(
            name
            for name, origins in state.fields.items()
            if name in classified or any(o.field in classified for o in origins)
        )
        if carried:
            out.append(
                f"sinks[{i}].audience: sink '{sink.name}' may carry classified fields "
                f"({', '.join(carried)}) and names no audience, which governance."
                f"require_audience refuses; add 'audience:' ({hint})"
            )
    if spec.dead_letter.audience is None and not spec.dead_letter.redact:
        out.append(
            "dead_letter.audience: the dead letters keep original records with classified "
            f"fields ({', '.join(sorted(classified))}) and name no audience, which governance."
            f"require_audience refuses; add 'audience:' ({hint}) or redact: true"
        )
    return out
