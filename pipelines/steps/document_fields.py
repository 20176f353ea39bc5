"""The ``document_fields`` step: document rows (from the ``document`` source) classified as
invoice, receipt or contract, and their type's fields extracted with confidence scores into
typed columns (invoice: vendor, number, dates, currency, net/tax/total, line items; receipt:
merchant, date, total; contract: parties, effective/termination dates, governing law). A
document of another type, or of none, is a dead letter (rule ``document_type``).

With ``mask_pii`` the text's emails, phones, IBANs (mod-97), card numbers (Luhn) and national
ids are masked, their kinds listed in ``pii_types``, and the type's ``retention_class`` set.

Column lineage: every added field is derived from ``text`` (DIRECT, TRANSFORMATION); with
``mask_pii`` the text itself is masked (the masking flag in OpenLineage's facet) and declared PII.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from lineage.columns import FieldState, Step
from pipelines.registry import Kind
from pipelines.spec_base import StepBase

DOCUMENT_TYPES = ("invoice", "receipt", "contract")


class DocumentFieldsStepSpec(StepBase):
    """Classify documents and extract their fields."""

    type: Literal["document_fields"]
    document_types: list[Literal["invoice", "receipt", "contract"]] = Field(
        default=list(DOCUMENT_TYPES), min_length=1,
        description="Types to extract; documents of other types are dead letters.",
    )
    mask_pii: bool = Field(
        default=False,
        description="Mask emails, phones, IBANs, card numbers and national ids in the text; "
        "record pii_types, pii_count and retention_class.",
    )
    min_type_confidence: float = Field(
        default=0.5, ge=0, le=1,
        description="Share of the type keywords the winning type must have, else no type.",
    )


def build(node: DocumentFieldsStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from transforms.document_fields import DocumentFields

    return rows | node.name >> DocumentFields(
        step_name=node.name,
        document_types=node.document_types,
        mask_pii=node.mask_pii,
        min_type_confidence=node.min_type_confidence,
        run_id=ctx.run_id,
    )


def lineage(node: DocumentFieldsStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    from transforms.document_fields import output_fields

    walk.read(f"{path}.type", ["text"], state)
    out = state.copy()
    text = state.fields.get("text", [])
    derived = Step("DIRECT", "TRANSFORMATION", f"{node.name}: extracted from the document text")
    for name in output_fields(node.mask_pii):
        out.fields[name] = [o.then(derived) for o in text]
    if node.mask_pii:
        masked = Step("DIRECT", "TRANSFORMATION", "masked: pii spans", True, "pii_tokens")
        out.fields["text"] = [o.then(masked) for o in text]
    return out


def classifications(node: DocumentFieldsStepSpec) -> dict[str, str]:
    # names of people can be parties; the text holds personal data until (and beside) masking
    return {"text": "PII", "parties": "PII"} if node.mask_pii else {}


KIND = Kind("step", DocumentFieldsStepSpec, build, lineage=lineage, classifications=classifications)
