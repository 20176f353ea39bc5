"""The ``document_fields`` step's work: each document row classified, its type's fields
extracted with confidences into typed columns, and (with ``mask_pii``) personal data found and
masked in the text, its kinds and the document's retention class recorded.

A document of a type the step was not asked for, or of no recognisable type, is a dead letter
(rule ``document_type``): a document is never silently dropped. Confidences: the extractor's
(:mod:`transforms.document_extractors`), times the OCR confidence when the text was OCR'd (a
field read from a scan is less certain than one from a text layer).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from connectors.records import POSITION_COLUMNS
from transforms.document_extractors import EXTRACTORS, FIELDS, classify
from transforms.pii import find_pii, mask_pii
from transforms.step import ArrowStep, StepResult, with_rejected_rows

RULE = "document_type"
LINE_ITEM = pa.struct(
    [("description", pa.string()), ("quantity", pa.int64()), ("unit_price", pa.float64()),
     ("amount", pa.float64())]
)
FIELD_TYPES: dict[str, pa.DataType] = {
    "vendor": pa.string(), "invoice_number": pa.string(), "invoice_date": pa.date32(),
    "due_date": pa.date32(), "currency": pa.string(), "net_amount": pa.float64(),
    "tax_amount": pa.float64(), "total_amount": pa.float64(), "line_items": pa.list_(LINE_ITEM),
    "merchant": pa.string(), "date": pa.date32(), "parties": pa.list_(pa.string()),
    "effective_date": pa.date32(), "termination_date": pa.date32(), "governing_law": pa.string(),
}
"""Every extracted field's column type (the union over the types; a type's table keeps its own)."""

ADDED: dict[str, pa.DataType] = {
    "document_type": pa.string(),
    "type_confidence": pa.float64(),
    "field_confidence": pa.float64(),  # mean over the type's fields, a missing field counting 0
    "confidences": pa.map_(pa.string(), pa.float64()),
    **FIELD_TYPES,
}
COMPLIANCE: dict[str, pa.DataType] = {
    "pii_types": pa.list_(pa.string()),
    "pii_count": pa.int64(),
    "retention_class": pa.string(),
}

RETENTION = {"invoice": "financial-10y", "receipt": "financial-10y", "contract": "contract-term+6y"}
"""Retention class per type: invoices and receipts are accounting records (10 years under
e.g. HGB s.257 / the UK's 6 years, the longer kept); contracts for their term plus the
limitation period."""


def output_fields(mask: bool) -> dict[str, pa.DataType]:
    """The columns the step adds to the document rows."""
    return {**ADDED, **(COMPLIANCE if mask else {})}


class DocumentFieldExtractor:
    """Batch processor of :class:`DocumentFields`.

    Args:
        step_name: names counters and dead letters.
        document_types: the types to extract; others are dead letters (rule ``document_type``).
        mask_pii: mask personal data in ``text`` and record ``pii_types``/``pii_count`` and the
            ``retention_class``.
        min_type_confidence: a classification weaker than this is "no recognisable type".
        run_id: stamped on dead letters.
    """

    def __init__(
        self,
        *,
        step_name: str,
        document_types: Sequence[str],
        mask_pii: bool = False,
        min_type_confidence: float = 0.5,
        run_id: str = "",
    ) -> None:
        unknown = sorted(set(document_types) - set(EXTRACTORS))
        if unknown:
            raise ValueError(f"document types {unknown} are not supported (supported: {sorted(EXTRACTORS)})")
        self.step_name = step_name
        self.document_types = list(document_types)
        self.mask_pii = mask_pii
        self.min_type_confidence = min_type_confidence
        self.run_id = run_id

    def setup(self) -> None:
        """Nothing to set up: extraction is pure."""

    def extract(self, row: Mapping[str, Any]) -> dict[str, Any] | str:
        """The added columns of one document row, or why it is a dead letter."""
        text = row.get("text") or ""
        kind, confidence = classify(text)
        if kind is None or confidence < self.min_type_confidence:
            return f"not recognised as any of {self.document_types} (best guess {kind}, confidence {confidence})"
        if kind not in self.document_types:
            return f"classified as {kind} (confidence {confidence}); this step extracts {self.document_types}"
        ocr = row.get("ocr_confidence")  # set when the text was read by OCR (Tesseract, Textract)
        scale = ocr / 100.0 if ocr is not None else 1.0
        found = EXTRACTORS[kind](text)
        out: dict[str, Any] = {name: None for name in FIELD_TYPES}
        confidences = {}
        for name in FIELDS[kind]:
            if name in found:
                out[name] = found[name][0]
                confidences[name] = round(found[name][1] * scale, 3)
        out |= {
            "document_type": kind,
            "type_confidence": confidence,
            "field_confidence": round(sum(confidences.values()) / len(FIELDS[kind]), 3),
            "confidences": list(confidences.items()),
        }
        if self.mask_pii:
            findings = find_pii(text)
            out |= {
                "text": mask_pii(text, findings),
                "pii_types": sorted({f.kind for f in findings}),
                "pii_count": len(findings),
                "retention_class": RETENTION[kind],
            }
        return out

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        rows = table.to_pylist()
        kept: list[dict[str, Any]] = []
        bad: list[int] = []
        reasons: list[str] = []
        for n, row in enumerate(rows):
            result = self.extract(row)
            if isinstance(result, str):
                bad.append(n)
                reasons.append(result)
            else:
                kept.append(row | result)
        base = [f for f in table.schema if f.name not in POSITION_COLUMNS and f.name not in ADDED]
        added = [pa.field(n, t) for n, t in output_fields(self.mask_pii).items()]
        schema = pa.schema(base + added + [table.schema.field(c) for c in POSITION_COLUMNS if c in table.column_names])
        out = pa.Table.from_pylist(kept, schema=schema)
        return with_rejected_rows(
            out, table, bad, reasons, rule=RULE, step_name=self.step_name, run_id=self.run_id
        )


def field_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row's extracted fields of its type as JSON-ready values (dates as ISO text): what the
    accuracy report compares with the ground truth."""
    kind = row["document_type"]
    out = {}
    for name in FIELDS[kind]:
        value = row.get(name)
        out[name] = value.isoformat() if isinstance(value, dt.date) else value
    return json.loads(json.dumps(out))


class DocumentFields(ArrowStep):
    """Classify documents and extract their fields; ``rows`` and ``dead_letters`` outputs.

    Args: those of :class:`DocumentFieldExtractor`.
    """

    def __init__(self, *, step_name: str = "document_fields", **options: Any) -> None:
        super().__init__(DocumentFieldExtractor(step_name=step_name, **options), step_name=step_name)
