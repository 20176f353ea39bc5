"""The ``document`` source: business documents (PDF, scans and images, DOCX, HTML, plain text)
matching globs, one row per document with its text, page count, extraction method and a
reference to the original bytes (path, size, SHA-256 as ``document_id``).

PDFs are read with pypdf; PDF pages without text, and images, go through Tesseract OCR.
Unreadable documents are dead letters with their original bytes and the reason (rule
``encrypted``, ``no_text``, ``ocr_confidence``, ``corrupt``, ``format``). Needs the
``documents`` extra, and ``tesseract-ocr`` (``make tesseract``) when a scan or image is read.
``provider: aws`` reads PDFs and images with Amazon Textract instead (boto3, the ``aws`` extra);
``provider: azure`` reads them with Azure AI Document Intelligence, ``provider: google`` with a
Google Document AI processor (their REST APIs through the project's HTTP client: retries,
Retry-After, a circuit breaker). What a provider refuses after
its retries is a dead letter (rule ``provider_error``).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field, model_validator

from pipelines.document_reading import (
    FIELDS,
    AwsTextractSpec,
    AzureSettings,
    GoogleSettings,
    MinOcrConfidence,
    Provider,
    check_provider_settings,
    document_extras,
    provider_configs,
)
from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel


class DocumentSourceSpec(SpecModel):
    """Document files matching glob patterns, read into text."""

    type: Literal["document"]
    name: Name
    paths: list[str] = Field(min_length=1, description="Files or glob patterns (local, gs://, ...).")
    min_ocr_confidence: MinOcrConfidence = 60.0
    allow_empty: bool = Field(default=False, description="Succeed when no file matches.")
    provider: Provider = "local"
    aws: AwsTextractSpec = Field(default_factory=AwsTextractSpec)
    azure: AzureSettings = None
    google: GoogleSettings = None

    def needed_extras(self) -> tuple[str, ...]:
        return document_extras(self)

    @model_validator(mode="after")
    def _provider_settings(self) -> DocumentSourceSpec:
        check_provider_settings(self)
        return self


def _files(node: DocumentSourceSpec) -> list[str]:
    from connectors.fileio import match_files

    return sorted({f for pattern in node.paths for f in match_files(pattern)})


def build(node: DocumentSourceSpec, ctx: Any, path: str) -> None:
    from connectors.documents.read import FORMATS
    from connectors.documents.source import DOCUMENT_SCHEMA, ReadDocuments

    files = _files(node)
    if not files and not node.allow_empty:
        raise ctx.fail(f"{path}.paths", f"no file matches {node.paths}; check the paths, or set allow_empty: true")
    images = [f for f in files if FORMATS.get(PurePath(f).suffix.lower()) == "image"]
    textract, azure, google = provider_configs(node)
    if node.provider == "local" and images:  # images need OCR: say so before the run (scans later)
        from connectors.documents.ocr import OcrUnavailable, check_available

        try:
            check_available()
        except OcrUnavailable as exc:
            raise ctx.fail(f"{path}.paths", f"{exc} (e.g. {images[0]})") from None
    outputs = ctx.pipeline | node.name >> ReadDocuments(
        files,
        source_name=node.name,
        min_ocr_confidence=node.min_ocr_confidence,
        run_id=ctx.run_id,
        textract=textract,
        azure=azure,
        google=google,
    )
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    schema = DOCUMENT_SCHEMA
    # one input dataset named by the patterns' common folder, its schema the document rows'
    # (the files are not data files lineage could read a schema from)
    uri = node.paths[0] if len(node.paths) == 1 else _common_folder(node.paths)
    ctx.inputs.append(ctx.dataset(node.name, "source", uri, "document", schema=lambda: schema))


def _common_folder(patterns: list[str]) -> str:
    import os.path

    folders = [os.path.dirname(p.split("*")[0]) for p in patterns]
    try:
        return os.path.commonpath(folders) or folders[0]
    except ValueError:  # local and remote paths mixed
        return folders[0]


def known_fields(node: DocumentSourceSpec) -> list[str]:
    return list(FIELDS)


def paths(node: DocumentSourceSpec) -> list[tuple[str, str, bool]]:
    return [("paths", p, False) for p in node.paths]


def origins(node: DocumentSourceSpec, dataset: Any, path: str) -> tuple[dict, dict]:
    """Each matched file is a record of its own: a step's dead letter of a document (rule
    ``document_type``, ...) gets the file's bytes back (:mod:`connectors.originals`)."""
    from connectors.originals import file_origins

    return file_origins(_files(node), "document", {}), {}


KIND = Kind(
    "source",
    DocumentSourceSpec,
    build,
    known_fields=known_fields,
    paths=paths,
    origins=origins,
)
