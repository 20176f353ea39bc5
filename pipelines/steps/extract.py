"""The ``extract`` step: declared fields picked by JSON path out of nested rows (webhook or
stream payloads read from Kafka) and typed as the ``http`` source types records; a value that
does not cast dead-letters its row (rule ``extract``), a missing path is null.

Column lineage: each field comes from the top-level field its path starts with (DIRECT,
TRANSFORMATION: picked and cast); the output holds the declared fields only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Step
from pipelines.registry import Kind
from pipelines.spec_base import StepBase
from pipelines.steps.http import ResponseField


class ExtractStepSpec(StepBase):
    """Pick fields of nested rows by JSON path and type them."""

    type: Literal["extract"]
    fields: dict[str, ResponseField | str] = Field(
        min_length=1,
        description="Column -> JSON path in the row (a string column) or {path, type}.",
    )

    @model_validator(mode="after")
    def _paths(self) -> ExtractStepSpec:
        from connectors.http import jsonpath

        for name, spec in self.typed_fields().items():
            try:
                jsonpath.parse(spec.path)
            except ValueError as exc:
                raise ValueError(f"fields.{name}: {exc}") from None
        return self

    def typed_fields(self) -> dict[str, ResponseField]:
        return {
            name: ResponseField(path=spec) if isinstance(spec, str) else spec
            for name, spec in self.fields.items()
        }


def _root(path: str) -> str | None:
    from connectors.http import jsonpath

    first = jsonpath.parse(path)[0]
    return first if isinstance(first, str) else None


def build(node: ExtractStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.extract import Extract
    from transforms.json_records import SourceField

    fields = [SourceField(n, f.path, f.type) for n, f in node.typed_fields().items()]
    return rows | node.name >> Extract(step_name=node.name, fields=fields, run_id=ctx.run_id)


def lineage(node: ExtractStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    fields = {}
    for name, spec in node.typed_fields().items():
        root = _root(spec.path)
        if root is not None:
            walk.read(f"{path}.fields.{name}", [root], state)
        picked = Step("DIRECT", "TRANSFORMATION", f"{spec.path} as {spec.type}")
        fields[name] = [o.then(picked) for o in state.fields.get(root or "", [])]
    out.fields = fields
    out.complete = True
    return out


KIND = Kind("step", ExtractStepSpec, build, lineage=lineage)
