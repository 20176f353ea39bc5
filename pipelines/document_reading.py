"""How documents are read, shared by the ``document`` source (files matching globs) and the
``read_documents`` step (object paths named by rows, e.g. Kafka messages): the document row's
fields, the remote providers' settings and the provider configs built from them. Its own
module so that neither kind imports the other (sources and steps stay acyclic)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from pipelines.spec_base import SecretSpec, SpecModel

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


MinOcrConfidence = Annotated[
    float,
    Field(
        ge=0, le=100,
        description="Mean Tesseract word confidence (0-100) below which an OCR'd document is "
        "dead-lettered (rule ocr_confidence).",
    ),
]
Provider = Annotated[
    Literal["local", "aws", "azure", "google"],
    Field(
        description="Who reads PDFs and images: local (pypdf, Tesseract), aws (Amazon "
        "Textract DetectDocumentText, credentials from boto3's chain), azure (Document "
        "Intelligence prebuilt-read) or google (a Document AI processor). DOCX, HTML and "
        "text are read locally either way.",
    ),
]
AzureSettings = Annotated[AzureDocumentSpec | None, Field(description="Required with provider azure.")]
GoogleSettings = Annotated[GoogleDocumentSpec | None, Field(description="Required with provider google.")]
"""The reading options' field types, declared once for the source's and the step's models
(fields rather than a shared base model, which would put them before ``type`` and ``name``)."""


def document_extras(node: Any) -> tuple[str, ...]:
    """The extras reading documents needs (the source's and ``read_documents``): the local
    readers (pypdf, Pillow, pytesseract, python-docx: DOCX and HTML are read locally whatever
    the provider) and, for provider aws, boto3 for Textract."""
    return ("documents", "aws") if node.provider == "aws" else ("documents",)


def check_provider_settings(node: Any) -> None:
    """Refuse a remote provider without its settings (the source and ``read_documents``)."""
    if node.provider == "azure" and node.azure is None:
        raise ValueError("provider azure needs azure: {endpoint, key}")
    if node.provider == "google" and node.google is None:
        raise ValueError("provider google needs google: {project, location, processor, token}")


def provider_configs(node: Any) -> tuple[Any, Any, Any]:
    """The (textract, azure, google) configs of ``node``'s provider (None for the others), as
    :func:`connectors.documents.source.remote_reader` takes them: built from the spec's
    provider options by the ``document`` source and the ``read_documents`` step alike."""
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
    return textract, azure, google
