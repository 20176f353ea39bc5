"""Amazon Textract (``DetectDocumentText``) as the OCR of the ``aws`` provider, through boto3.

Textract's synchronous call takes the bytes of a PNG, JPEG, TIFF or single-page PDF and answers
``Blocks``: PAGE, LINE and WORD blocks, each LINE with its ``Text`` and ``Confidence`` (0-100).
The text is the LINE blocks in reading order, the confidence their mean, so the source's
``min_ocr_confidence`` judges Textract's reading as it judges Tesseract's. DOCX, HTML and text
need no OCR and are read locally whichever the provider.

Throttling and transient errors are retried by botocore's ``adaptive`` mode (exponential
backoff plus a client-side rate limiter that slows down when AWS throttles); what is still
refused after the attempts is an :class:`~connectors.documents.read.UnreadableDocument` with
rule ``provider_error`` (a dead letter, the run goes on), and a circuit breaker (the HTTP
client's, :mod:`connectors.http.breaker`) stops calling a service that keeps failing. Credentials come from boto3's chain
(environment, profile, instance role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.documents.read import DocumentText, UnreadableDocument


@dataclass(frozen=True)
class TextractConfig:
    region: str = "us-east-1"
    endpoint_url: str | None = None  # a VPC endpoint, or moto in the tests
    max_attempts: int = 5
    timeout: float = 30.0


def client(config: TextractConfig) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session(region_name=config.region).client(
        "textract",
        endpoint_url=config.endpoint_url,
        config=Config(
            connect_timeout=config.timeout,
            read_timeout=config.timeout,
            retries={"mode": "adaptive", "max_attempts": config.max_attempts},
        ),
    )


def blocks_text(answer: dict[str, Any]) -> tuple[str, float, int, int]:
    """(text, mean LINE confidence, lines, pages) of a DetectDocumentText answer."""
    lines = [b for b in answer.get("Blocks", []) if b.get("BlockType") == "LINE"]
    lines.sort(key=lambda b: (b.get("Page", 1), b.get("Geometry", {}).get("BoundingBox", {}).get("Top", 0.0)))
    confidence = sum(float(b.get("Confidence", 0.0)) for b in lines) / len(lines) if lines else 0.0
    stated = answer.get("DocumentMetadata", {}).get("Pages")
    # documented as an integer; moto 5.2 answers an object: count the PAGE blocks then
    pages = stated if isinstance(stated, int) else max(
        1, sum(1 for b in answer.get("Blocks", []) if b.get("BlockType") == "PAGE")
    )
    return "\n".join(b.get("Text", "") for b in lines), round(confidence, 1), len(lines), pages


SERVER_SIDE = ("InternalServerError", "ThrottlingException", "ProvisionedThroughputExceededException",
               "ServiceUnavailable")
"""Error codes that say the service, not the document, is failing: they trip the breaker."""


def textract_document(textract: Any, data: bytes, threshold: float, breaker: Any = None) -> DocumentText:
    """The text Textract reads from ``data``; :class:`UnreadableDocument` when it cannot.

    ``breaker`` (a :class:`connectors.http.breaker.CircuitBreaker`) stops calling a service that
    keeps failing after botocore's retries: the next documents are dead letters at once, until
    a probe succeeds, instead of each waiting out every retry."""
    from botocore.exceptions import BotoCoreError, ClientError

    if breaker is not None and not breaker.allow():
        raise UnreadableDocument(
            "provider_error", f"Textract circuit open after repeated failures (retry in {breaker.retry_in():.0f} s)"
        )
    try:
        answer = textract.detect_document_text(Document={"Bytes": data})
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if breaker is not None:
            breaker.record(error.get("Code") not in SERVER_SIDE)
        raise UnreadableDocument(
            "provider_error", f"Textract refused the document: {error.get('Code')}: {error.get('Message')}"
        ) from None
    except BotoCoreError as exc:
        if breaker is not None:
            breaker.record(False)
        raise UnreadableDocument("provider_error", f"Textract could not be reached: {exc}") from None
    if breaker is not None:
        breaker.record(True)
    text, confidence, lines, pages = blocks_text(answer)
    if not lines or not text.strip():
        raise UnreadableDocument("no_text", f"Textract found no text ({pages} page(s))")
    if confidence < threshold:
        raise UnreadableDocument(
            "ocr_confidence", f"Textract confidence {confidence} is below the threshold {threshold} ({lines} lines)"
        )
    return DocumentText(text, pages, "textract", confidence)
