"""The ``mask`` step: redact, partial, hash, pseudonymize, bucket or email_domain a field.

Column lineage: a masked field keeps its origins, with a DIRECT TRANSFORMATION marked
``masking`` (OpenLineage's column lineage facet carries that flag).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Step
from pipelines.registry import Kind
from pipelines.spec_base import SecretSpec, SpecModel, StepBase


class MaskFieldSpec(SpecModel):
    field: str
    strategy: Literal["redact", "partial", "hash", "pseudonymize", "bucket", "email_domain"]
    replacement: str | None = None
    keep_last: int | None = Field(default=None, ge=0)
    keep_first: int | None = Field(default=None, ge=0)
    mask_char: str | None = Field(default=None, min_length=1, max_length=1)
    salt: SecretSpec | None = None
    key: SecretSpec | None = None
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


def build(node: MaskStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from pipelines.build import resolve_secret_ref
    from transforms.mask import Mask

    fields = []
    for i, f in enumerate(node.fields):
        options = f.model_dump(exclude_none=True, exclude={"salt", "key"})
        for secret in ("salt", "key"):
            ref = resolve_secret_ref(getattr(f, secret), f"{path}.fields[{i}].{secret}")
            if ref is not None:
                options[secret] = ref
        fields.append(options)
    from transforms.masking import MaskError

    try:
        mask = Mask(fields=fields, step_name=node.name)
    except MaskError as exc:
        raise ctx.fail(f"{path}.fields", str(exc)) from None
    return rows | node.name >> mask


def lineage(node: MaskStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    for j, m in enumerate(node.fields):
        walk.read(f"{path}.fields[{j}].field", [m.field], state)
        step = Step("DIRECT", "TRANSFORMATION", f"masked: {m.strategy}", True, m.strategy)
        top = m.field.split(".")[0]
        out.fields[top] = [o.then(step) for o in out.fields.get(top, [])]
    return out


KIND = Kind("step", MaskStepSpec, build, lineage=lineage)
