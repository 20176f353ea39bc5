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

from pipelines.registry import Kind
from pipelines.spec_base import Name, SecretSpec, SpecModel

FIELDS = [
    "document_id", "path", "file_name", "format", "size_bytes", "pages", "extraction_method",
    "ocr_confidence", "text",
]


class AwsTextractSpec(SpecModel):
    """Where Textract is (provider aws)."""

    region: str = "us-east-1"
    endpoint_url: str | None = Field(default=None, description="A VPC endpoint, LocalStack or moto.")
    max_attempts: int = Field(default=5, ge=1, description="Attempts per document (adaptive retries).")


class AzureDocumentSpec(SpecModel):
    """Where Azure AI Document Intelligence is (provider azure)."""

    endpoint: str = Field(description="The resource's endpoint, e.g. https://NAME.cognitiveservices.azure.com.")
    key: SecretSpec = Field(description="The resource key: env:VAR, file:PATH or a secret store reference.")
    model: str = Field(default="prebuilt-read", description="The analysis model.")
    max_attempts: int = Field(default=4, ge=1, description="Attempts per request.")


class GoogleDocumentSpec(SpecModel):
    """Which Google Document AI processor reads the documents (provider google)."""

    project: str
    location: str = Field(default="us", description="The processor's location: us or eu.")
    processor: str = Field(description="The processor id (an OCR or form parser processor).")
    token: SecretSpec = Field(description="An OAuth access token: env:VAR, file:PATH or a store reference.")
    endpoint: str | None = Field(default=None, description="Default https://LOCATION-documentai.googleapis.com.")
    max_attempts: int = Field(default=4, ge=1, description="Attempts per document.")


class DocumentSourceSpec(SpecModel):
    """Document files matching glob patterns, read into text."""

    type: Literal["document"]
    name: Name
    paths: list[str] = Field(min_length=1, description="Files or glob patterns (local, gs://, ...).")
    min_ocr_confidence: float = Field(
        default=60.0, ge=0, le=100,
        description="Mean Tesseract word confidence (0-100) below which an OCR'd document is "
        "dead-lettered (rule ocr_confidence).",
    )
    allow_empty: bool = Field(default=False, description="Succeed when no file matches.")
    provider: Literal["local", "aws", "azure", "google"] = Field(
        default="local",
        description="Who reads PDFs and images: local (pypdf, Tesseract), aws (Amazon "
        "Textract DetectDocumentText, credentials from boto3's chain), azure (Document "
        "Intelligence prebuilt-read) or google (a Document AI processor). DOCX, HTML and "
        "text are read locally either way.",
    )
    aws: AwsTextractSpec = Field(default_factory=AwsTextractSpec)
    azure: AzureDocumentSpec | None = Field(default=None, description="Required with provider azure.")
    google: GoogleDocumentSpec | None = Field(default=None, description="Required with provider google.")

    @model_validator(mode="after")
    def _provider_settings(self) -> DocumentSourceSpec:
        if self.provider == "azure" and self.azure is None:
            raise ValueError("provider azure needs azure: {endpoint, key}")
        if self.provider == "google" and self.google is None:
            raise ValueError("provider google needs google: {project, location, processor, token}")
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
    textract = azure = google = None
    if node.provider == "google" and node.google is not None:
        from connectors.documents.google import GoogleConfig

        g = node.google
        google = GoogleConfig(
            g.project, g.location, g.processor,
            g.token.model_dump(exclude_none=True, exclude_defaults=True), g.endpoint, g.max_attempts,
        )
    elif node.provider == "azure" and node.azure is not None:
        from connectors.documents.azure import AzureConfig

        azure = AzureConfig(
            node.azure.endpoint,
            node.azure.key.model_dump(exclude_none=True, exclude_defaults=True),
            node.azure.model,
            node.azure.max_attempts,
        )
    elif node.provider == "aws":
        from connectors.documents.textract import TextractConfig

        textract = TextractConfig(node.aws.region, node.aws.endpoint_url, node.aws.max_attempts)
    elif images:  # images always need OCR: say so before the run (scanned PDFs are found later)
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


KIND = Kind("source", DocumentSourceSpec, build, known_fields=known_fields, paths=paths)
