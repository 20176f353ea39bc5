"""Audiences (who reads an output) and the conditions mask rules carry on their attributes.

A spec declares its audiences under ``governance.audiences`` (attributes such as clearance,
region, department, access_level, roles) and an ordered ``governance.clearance_levels``;
each sink names its audience, and a mask rule with ``when:`` applies to the outputs whose
audience satisfies the condition. The same shape as the workflow SDK's attribute-based
masking rules (``less_than``, ``in``, ``security_level_below`` on an ordered clearance
scale, ``and``/``or``), with one difference that matters: the audience of an output is
known when the pipeline is built, so every condition is evaluated *then*, once, and the
rows only ever meet plain unconditional masks (see :mod:`pipelines.audience_masks`).

Masks fail closed: a condition on an attribute the audience does not have holds (the mask
applies), and an output with no audience gets every conditional mask. There is no ``not``,
so no condition can turn a missing attribute into "show the exact value".

Plain pydantic: no Beam, no pyarrow (the spec's ground floor imports this module).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import Field, model_validator

from connectors.errors import did_you_mean
from pipelines.spec_base import Name, SpecModel

AttributeValue = str | int | float | bool | list[str]

STANDARD_ATTRIBUTES = ("clearance", "region", "department", "access_level", "roles")
"""Attributes every audience may set by name; others go under ``attributes``."""

COMPARISONS = ("less_than", "less_or_equal", "greater_than", "greater_or_equal")
MEMBERSHIP = ("equals", "in", "not_in", "contains")
LEVELS = ("security_level_below", "security_level_meets")
OPERATORS = (*COMPARISONS, *MEMBERSHIP, *LEVELS)


class AudienceSpec(SpecModel):
    """Who reads an output, by attributes (not by name: a new reader with the same attributes
    is covered by the same rules)."""

    description: str = ""
    clearance: str | None = Field(
        default=None, description="A level of governance.clearance_levels, e.g. confidential."
    )
    region: str | None = None
    department: str | None = None
    access_level: int | None = Field(default=None, description="A number; higher sees more.")
    roles: list[str] = Field(default_factory=list)
    attributes: dict[Name, AttributeValue] = Field(
        default_factory=dict, description="Further attributes conditions may name."
    )

    @model_validator(mode="after")
    def _no_shadowing(self) -> AudienceSpec:
        clash = sorted(set(self.attributes) & set(STANDARD_ATTRIBUTES))
        if clash:
            raise ValueError(
                f"'{clash[0]}' is a standard attribute; set it directly, not under attributes"
            )
        return self

    def values(self) -> dict[str, Any]:
        """Attribute name -> value, only those the audience has (roles always: no roles is
        a value)."""
        out: dict[str, Any] = {
            name: getattr(self, name)
            for name in STANDARD_ATTRIBUTES
            if getattr(self, name) is not None
        }
        return out | dict(self.attributes)


class ConditionSpec(SpecModel):
    """``{attribute: access_level, less_than: 7}``, ``{attribute: region, in: [eu, uk]}``,
    ``{attribute: clearance, security_level_below: secret}``, ``{and: [...]}``,
    ``{or: [...]}``: true when the mask applies to an audience."""

    attribute: str | None = None
    less_than: float | None = None
    less_or_equal: float | None = None
    greater_than: float | None = None
    greater_or_equal: float | None = None
    equals: str | int | float | bool | None = None
    in_: list[str | int | float | bool] | None = Field(default=None, alias="in")
    not_in: list[str | int | float | bool] | None = None
    contains: str | None = Field(
        default=None, description="A list attribute (roles) holds this value."
    )
    security_level_below: str | None = Field(
        default=None, description="The attribute's level is below this one on clearance_levels."
    )
    security_level_meets: str | None = Field(
        default=None, description="The attribute's level is this one or above."
    )
    and_: list[ConditionSpec] | None = Field(default=None, alias="and", min_length=1)
    or_: list[ConditionSpec] | None = Field(default=None, alias="or", min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> ConditionSpec:
        operators = [op for op in OPERATORS if self.operand(op) is not None]
        forms = [f for f, v in (("and", self.and_), ("or", self.or_)) if v is not None]
        if self.attribute is not None:
            forms.append("attribute")
        if len(forms) != 1:
            raise ValueError(
                "a condition is one of {attribute: NAME, <operator>: VALUE}, {and: [...]} or "
                "{or: [...]}"
            )
        if forms == ["attribute"] and len(operators) != 1:
            raise ValueError(
                f"give the attribute '{self.attribute}' exactly one operator: "
                + ", ".join(OPERATORS)
            )
        if forms != ["attribute"] and operators:
            raise ValueError(f"'{operators[0]}' needs an 'attribute' beside it")
        return self

    def operand(self, operator: str) -> Any:
        return getattr(self, "in_" if operator == "in" else operator)

    @property
    def operator(self) -> str:
        """The one operator of an attribute condition."""
        return next(op for op in OPERATORS if self.operand(op) is not None)

    def leaves(self, path: str = "when") -> Iterator[tuple[str, ConditionSpec]]:
        """(spec path, condition) of every attribute condition inside this one."""
        for key, parts in (("and", self.and_), ("or", self.or_)):
            for i, part in enumerate(parts or ()):
                yield from part.leaves(f"{path}.{key}[{i}]")
        if self.attribute is not None:
            yield path, self


ConditionSpec.model_rebuild()


class ConditionError(ValueError):
    """A condition cannot be evaluated for an audience (an attribute of the wrong type)."""


def holds(condition: ConditionSpec, audience: AudienceSpec | None, scale: Sequence[str]) -> bool:
    """Whether ``condition`` holds for ``audience``: evaluated once, when the pipeline is
    built. No audience, or an attribute the audience lacks, holds (masks fail closed)."""
    if condition.and_ is not None:
        return all(holds(part, audience, scale) for part in condition.and_)
    if condition.or_ is not None:
        return any(holds(part, audience, scale) for part in condition.or_)
    assert condition.attribute is not None
    values = audience.values() if audience is not None else {}
    if condition.attribute not in values:
        return True
    return _compare(condition.operator, values[condition.attribute], condition, scale)


def _compare(operator: str, value: Any, condition: ConditionSpec, scale: Sequence[str]) -> bool:
    operand = condition.operand(operator)
    name = condition.attribute
    if operator in COMPARISONS:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConditionError(
                f"'{operator}' compares numbers but '{name}' is {value!r}; "
                + (
                    "use security_level_below/security_level_meets for levels"
                    if name == "clearance"
                    else "use equals or in for text"
                )
            )
        return {
            "less_than": value < operand,
            "less_or_equal": value <= operand,
            "greater_than": value > operand,
            "greater_or_equal": value >= operand,
        }[operator]
    if operator == "equals":
        return bool(value == operand)
    if operator == "in":
        return value in operand
    if operator == "not_in":
        return value not in operand
    if operator == "contains":
        if not isinstance(value, list):
            raise ConditionError(
                f"'contains' looks into a list attribute (roles) but '{name}' is {value!r}; "
                "use equals or in"
            )
        return operand in value
    level, wanted = _level(value, name, scale), scale.index(operand)
    return level < wanted if operator == "security_level_below" else level >= wanted


def _level(value: Any, name: str | None, scale: Sequence[str]) -> int:
    if value not in scale:
        raise ConditionError(
            f"'{name}' is {value!r}, which is not on governance.clearance_levels "
            f"({', '.join(scale) or 'none declared'})"
        )
    return list(scale).index(value)


def audience_problems(
    audiences: Mapping[str, AudienceSpec],
    scale: Sequence[str],
    references: Sequence[tuple[str, str | None]],
    conditions: Sequence[tuple[str, ConditionSpec]],
) -> list[str]:
    """Everything wrong with a spec's audiences, before anything runs: a clearance not on the
    scale, a sink naming an unknown audience, a condition naming an unknown attribute or
    level, or one that cannot be evaluated for some audience. ``references``: (path, audience
    name) of every sink; ``conditions``: (path, condition) of every mask rule's ``when``."""
    problems: list[str] = []
    if len(set(scale)) != len(scale):
        problems.append("governance.clearance_levels: a level is listed twice")
    for name, audience in audiences.items():
        if audience.clearance is not None and audience.clearance not in scale:
            hint = did_you_mean(audience.clearance, scale, listing="levels")
            problems.append(
                f"governance.audiences.{name}.clearance: '{audience.clearance}' is not on "
                f"governance.clearance_levels; {hint}"
                + ("" if scale else " (declare the ordered scale, lowest first)")
            )
    for path, name in references:
        if name is not None and name not in audiences:
            hint = did_you_mean(name, audiences, listing="audiences")
            problems.append(
                f"{path}: '{name}' is not an audience; {hint}"
                + ("" if audiences else " (declare it under governance.audiences)")
            )
    known = set(STANDARD_ATTRIBUTES) | {k for a in audiences.values() for k in a.attributes}
    for path, condition in conditions:
        for leaf_path, leaf in condition.leaves(path):
            problems.extend(_leaf_problems(leaf_path, leaf, known, scale))
    if problems:
        return problems
    for path, condition in conditions:
        for name, audience in audiences.items():
            try:
                holds(condition, audience, scale)
            except ConditionError as exc:
                problems.append(f"{path}: for audience '{name}': {exc}")
    return problems


def _leaf_problems(
    path: str, leaf: ConditionSpec, known: set[str], scale: Sequence[str]
) -> list[str]:
    assert leaf.attribute is not None
    if leaf.attribute not in known:
        hint = did_you_mean(leaf.attribute, known, listing="attributes")
        return [
            f"{path}.attribute: no audience attribute '{leaf.attribute}'; {hint} (or add it "
            "under an audience's attributes)"
        ]
    operator = leaf.operator
    if operator in LEVELS and leaf.operand(operator) not in scale:
        hint = did_you_mean(leaf.operand(operator), scale, listing="levels")
        return [
            f"{path}.{operator}: '{leaf.operand(operator)}' is not on "
            f"governance.clearance_levels; {hint}"
        ]
    return []
