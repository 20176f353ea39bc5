"""The ``validate`` step: typed fields, rules and Great Expectations suites; failing rows go to
the dead letters with every reason.

Column lineage: declared fields keep their origins (validated as their type); with
``additional_fields: drop|reject`` the rows hold exactly the declared fields; every field a
rule reads is a row-level (INDIRECT, FILTER) dependency of what is kept.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Step, depend
from pipelines.registry import Kind
from pipelines.spec_base import FieldType, SpecModel, StepBase


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
    expectations_severity: Literal["warning", "critical", "suite"] = Field(
        default="warning",
        description="Table-level expectations (row count, mean, median, ...) are judged once "
        "on the whole input: warning reports a failure; critical fails the run (nothing is "
        "published); suite takes each expectation's GX 'severity' (GX's default: critical).",
    )
    expectations_result: str | None = Field(
        default=None,
        description="Where to write the run's GX ExpectationSuiteValidationResult JSON; "
        "default: beside the first file output, as <output>.<step>.gx_validation.json.",
    )


def _rule(rule: Any, index: int) -> Any:
    from transforms import rules as r

    common = {"id": rule.rule_id(index), "severity": rule.severity}
    if isinstance(rule, NotNullRule):
        return r.NotNull(field=rule.field, **common)
    if isinstance(rule, BetweenRule):
        return r.Between(
            field=rule.field,
            min=rule.min,
            max=rule.max,
            exclusive=rule.exclusive,
            allow_nan=rule.allow_nan,
            **common,
        )
    if isinstance(rule, RegexRule):
        return r.Regex(field=rule.field, pattern=rule.regex, **common)
    if isinstance(rule, InSetRule):
        return r.InSet(field=rule.field, values=tuple(rule.values), **common)
    if isinstance(rule, LengthRule):
        return r.Length(field=rule.field, min=rule.min, max=rule.max, **common)
    if isinstance(rule, UniqueRule):
        return r.Unique(field=rule.field, **common)
    return r.Expression(expr=rule.expr, message=rule.message, **common)


def build(node: ValidateStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from pipelines.schemas import SchemaFileError, load_field_types
    from transforms.validate import Validate

    fields: dict[str, str] = {}
    required: set[str] = set()
    if node.schema_file:
        try:
            fields, required = load_field_types(node.schema_file)
        except SchemaFileError as exc:
            raise ctx.fail(f"{path}.schema_file", str(exc)) from None
    for name, f in node.fields.items():
        fields[name] = f.type
        if f.required:
            required.add(name)
    for sub, text in expressions(node):
        ctx.check_expression(text, f"{path}.{sub}")
    suite = None
    aggregates_dir = None
    if node.expectations:
        from transforms.expectations import ExpectationSuite, ExpectationSuiteError

        try:
            suite = ExpectationSuite.from_file(node.expectations)
            suite.check_with_gx()
        except (ExpectationSuiteError, OSError) as exc:
            raise ctx.fail(f"{path}.expectations", str(exc)) from None
        if suite.dataset_level:
            from pipelines.dataset_expectations import DatasetExpectations, aggregates_folder

            aggregates_dir = aggregates_folder(ctx.spec.run.profile_dir(ctx.run_id), node.name)
            ctx.before_publish.append(
                DatasetExpectations(
                    step=node.name,
                    suite=suite,
                    folder=aggregates_dir,
                    severity=node.expectations_severity,
                    result_path=node.expectations_result,
                )
            )
    return rows | node.name >> Validate(
        step_name=node.name,
        run_id=ctx.run_id,
        fields=fields,
        required=required,
        rules=[_rule(rule, i) for i, rule in enumerate(node.rules)],
        expectations=suite,
        additional_fields=node.additional_fields,
        aggregates_dir=aggregates_dir,
    )


def declared_types(node: ValidateStepSpec) -> dict[str, str]:
    """Field -> type the step declares: its schema file's fields, overridden by inline ones.
    An unreadable schema file declares nothing here; building the step reports it."""
    from pipelines.schemas import SchemaFileError, load_field_types

    types: dict[str, str] = {}
    if node.schema_file:
        with contextlib.suppress(SchemaFileError):
            types = load_field_types(node.schema_file)[0]
    return types | {name: f.type for name, f in node.fields.items()}


def lineage(node: ValidateStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.expressions import parse

    out = state.copy()
    types = declared_types(node)
    for name, type_name in types.items():
        # a declared field is always there afterwards (null when the input lacks it)
        cast = Step("DIRECT", "IDENTITY", f"validated as {type_name}")
        out.fields[name] = [o.then(cast) for o in out.fields.get(name, [])]
    if types and node.additional_fields != "keep":
        out.fields = {k: v for k, v in out.fields.items() if k in types}
        out.complete = True
    rule_fields: set[str] = set(n for n, f in node.fields.items() if f.required)
    for j, rule in enumerate(node.rules):
        if isinstance(rule, ExpressionRule):
            names = parse(rule.expr).fields
            walk.read(f"{path}.rules[{j}].expr", sorted(names), out)
            rule_fields |= set(names)
        else:
            walk.read(f"{path}.rules[{j}].field", [rule.field], out)
            rule_fields.add(rule.field)
    depend(out, rule_fields, Step("INDIRECT", "FILTER", f"{node.name}: validation rules"))
    return out


def expressions(node: ValidateStepSpec) -> Iterator[tuple[str, str]]:
    for j, rule in enumerate(node.rules):
        if isinstance(rule, ExpressionRule):
            yield f"rules[{j}].expr", rule.expr


def classifications(node: ValidateStepSpec) -> dict[str, str]:
    return {name: f.classification for name, f in node.fields.items() if f.classification}


def assertions(node: ValidateStepSpec, counts: dict[str, int]) -> list[dict[str, Any]]:
    """One data-quality assertion per declared type, required field and rule, and one per
    Great Expectations expectation type that failed, with the failures in ``counts``."""
    from lineage.facets import assertion

    items: list[dict[str, Any]] = []
    for name, f in node.fields.items():
        for kind, applies in (("type", True), ("required", f.required)):
            if applies:
                rid = f"{kind}:{name}"
                items.append(assertion(kind, rid, name, "error", counts.get(rid, 0)))
    for j, rule in enumerate(node.rules):
        rid = rule.rule_id(j)
        severity = "error" if rule.severity == "error" else "warn"
        column = getattr(rule, "field", None)
        items.append(assertion(rule.rule, rid, column, severity, counts.get(rid, 0)))
    for key, n in counts.items():
        if key.startswith("gx/"):
            items.append(assertion(key[3:], key, None, "error", n))
    return items


KIND = Kind(
    "step",
    ValidateStepSpec,
    build,
    lineage=lineage,
    declared_fields=declared_types,
    expressions=expressions,
    classifications=classifications,
    assertions=assertions,
)
