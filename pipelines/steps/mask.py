"""The ``mask`` step: redact, partial, hash, pseudonymize, bucket or email_domain a field.

A rule with ``when:`` (a condition on audience attributes, :mod:`pipelines.audience_spec`)
is not applied here: it is applied before each sink whose audience satisfies it, as a plain
unconditional mask built once per distinct masking (:mod:`pipelines.audience_masks`).

Column lineage: a masked field keeps its origins, with a DIRECT TRANSFORMATION marked
``masking`` (OpenLineage's column lineage facet carries that flag); a conditional rule's mark
is added per output by the lineage walk.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState
from pipelines.audience_masks import masking_step
from pipelines.audience_spec import ConditionSpec
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
    keep_separators: str | None = Field(
        default=None,
        min_length=1,
        description="partial: characters kept in place and not counted, e.g. '-' masks "
        "123-45-6789 as ***-**-6789.",
    )
    key_id: bool = Field(
        default=False,
        description="pseudonymize with a key from a store: prefix each token with the first 8 "
        "characters of the key version the run used and ':', so tokens made before and after "
        "a key rotation cannot be mistaken for each other.",
    )
    when: ConditionSpec | None = Field(
        default=None,
        description="Apply this rule only to outputs whose audience satisfies the condition, "
        "e.g. {attribute: access_level, less_than: 7}; evaluated when the pipeline is built.",
    )

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
        if self.key_id and (self.strategy != "pseudonymize" or self.key.store is None):
            raise ValueError("key_id applies to pseudonymize with a key from a store (its versions have ids)")
        return self


class MaskStepSpec(StepBase):
    type: Literal["mask"]
    fields: list[MaskFieldSpec] = Field(min_length=1)


def build(node: MaskStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    """The step's unconditional rules; those with ``when`` are applied per output audience
    (:mod:`pipelines.audience_masks` builds this node again with them unconditional)."""
    unconditional = [(i, f) for i, f in enumerate(node.fields) if f.when is None]
    return rows | node.name >> mask_transform(unconditional, node.name, path, ctx)


def mask_transform(
    rules: list[tuple[int, MaskFieldSpec]], step_name: str, path: str, ctx: Any
) -> Any:
    """The :class:`transforms.mask.Mask` applying ``rules`` ((index in the step, rule)) of the
    mask step at ``path``."""
    from pipelines.build import resolve_secret_ref
    from transforms.mask import Mask
    from transforms.masking import MaskError

    fields = []
    for i, f in rules:
        options = f.model_dump(exclude_none=True, exclude={"salt", "key", "when", "key_id"})
        for secret in ("salt", "key"):
            ref = resolve_secret_ref(getattr(f, secret), f"{path}.fields[{i}].{secret}")
            if ref is not None and secret == "key" and f.strategy == "pseudonymize":
                from connectors.secrets.pseudonyms import key_id

                # one key version for the whole run, recorded for lineage (key rotation)
                ref = ctx.key_pins.pin(ref, step=step_name, field=f.field)
                if f.key_id:
                    options["prefix"] = key_id(ref.ref)
            if ref is not None:
                options[secret] = ref
        fields.append(options)
    try:
        return Mask(fields=fields, step_name=step_name)
    except MaskError as exc:
        raise ctx.fail(f"{path}.fields", str(exc)) from None


def lineage(node: MaskStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    out = state.copy()
    for j, m in enumerate(node.fields):
        walk.read(f"{path}.fields[{j}].field", [m.field], state)
        if m.when is not None:  # marked per output, for the audiences it applies to
            continue
        top = m.field.split(".")[0]
        out.fields[top] = [o.then(masking_step(m)) for o in out.fields.get(top, [])]
    return out


def masks(node: MaskStepSpec) -> list[tuple[int, MaskFieldSpec]]:
    return list(enumerate(node.fields))


KIND = Kind("step", MaskStepSpec, build, lineage=lineage, masks=masks)
