"""The ``read_documents`` step: rows naming documents by object path (``path_field``; local,
file:// or any Beam FileSystems URI), e.g. Kafka messages ``{"path": "..."}``, each read into
the row the ``document`` source makes of that file (same schema, same readers and provider
options). A null or empty path (rule ``path``), a missing object (rule ``missing``) or an
unreadable document (the source's rules) dead-letters the input row, so the original message
and its position are kept.

Column lineage: every document field derives from the path field (DIRECT, TRANSFORMATION:
read from where the path points); the output holds the document fields only.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lineage.columns import FieldState, Step
from pipelines.document_reading import (
    FIELDS,
    AwsTextractSpec,
    AzureSettings,
    GoogleSettings,
    MinOcrConfidence,
    Provider,
    check_provider_settings,
    document_extras,
)
from pipelines.registry import Kind
from pipelines.spec_base import StepBase


class ReadDocumentsStepSpec(StepBase):
    """Read the documents named by a path field of each row (the ``document`` source's options)."""

    type: Literal["read_documents"]
    path_field: str = Field(
        default="path", description="The field holding each document's path or URI."
    )
    min_ocr_confidence: MinOcrConfidence = 60.0
    provider: Provider = "local"
    aws: AwsTextractSpec = Field(default_factory=AwsTextractSpec)
    azure: AzureSettings = None
    google: GoogleSettings = None

    def needed_extras(self) -> tuple[str, ...]:
        return document_extras(self)

    @model_validator(mode="after")
    def _provider_settings(self) -> ReadDocumentsStepSpec:
        check_provider_settings(self)
        return self


def build(node: ReadDocumentsStepSpec, ctx: Any, path: str, rows: Any) -> Any:
    from pipelines.document_reading import provider_configs
    from transforms.read_documents import ReadDocumentsStep

    textract, azure, google = provider_configs(node)
    return rows | node.name >> ReadDocumentsStep(
        step_name=node.name,
        path_field=node.path_field,
        min_ocr_confidence=node.min_ocr_confidence,
        textract=textract,
        azure=azure,
        google=google,
        run_id=ctx.run_id,
    )


def lineage(node: ReadDocumentsStepSpec, state: FieldState, walk: Any, path: str) -> FieldState:
    walk.read(f"{path}.path_field", [node.path_field], state)
    out = state.copy()
    read = Step("DIRECT", "TRANSFORMATION", f"document read from {node.path_field}")
    origins = state.fields.get(node.path_field, [])
    out.fields = {name: [o.then(read) for o in origins] for name in FIELDS}
    out.complete = True
    return out


KIND = Kind("step", ReadDocumentsStepSpec, build, lineage=lineage)
