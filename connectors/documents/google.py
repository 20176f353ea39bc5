"""Google Document AI (a processor's ``:process`` method, REST v1) as the OCR of the ``google``
provider.

The documented exchange: ``POST https://{location}-documentai.googleapis.com/v1/projects/
{project}/locations/{location}/processors/{processor}:process`` with ``{"rawDocument":
{"content": base64, "mimeType"}}`` and an OAuth bearer token answers ``{"document": {"text",
"pages": [{"pageNumber", "layout": {"confidence"}, "tokens": [{"layout": {"confidence"}}]}]}}``.
The text is ``document.text``; the confidence the mean token confidence (the pages' layout
confidence when there are no tokens), scaled to 0-100 like Tesseract's.

Calls go through the project's HTTP client (retries with backoff and ``Retry-After``, a circuit
breaker per host). Processing has no side effect, so the POST is retried like a GET. The token
is a secret reference resolved on the worker (e.g. ``env:GOOGLE_ACCESS_TOKEN`` filled by
``gcloud auth print-access-token``); minting tokens from a service account is not done here.
What is still refused is an :class:`~connectors.documents.read.UnreadableDocument`
(``provider_error``).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from connectors.documents.read import DocumentText, UnreadableDocument

MAGIC = ((b"%PDF", "application/pdf"), (b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"),
         (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


@dataclass(frozen=True)
class GoogleConfig:
    project: str
    location: str
    processor: str
    token: dict[str, Any]  # a secret reference: {env: VAR} | {file: PATH} | {store: ..., name: ...}
    endpoint: str | None = None  # default https://{location}-documentai.googleapis.com
    max_attempts: int = 4
    timeout: float = 60.0


def mime_type(data: bytes) -> str:
    """The MIME type Document AI needs, from the file's first bytes."""
    for magic, mime in MAGIC:
        if data.startswith(magic):
            return mime
    raise UnreadableDocument("format", "Document AI takes PDF, PNG, JPEG or TIFF; this is none of them")


class GoogleReader:
    """Reads documents with a Document AI processor; one per worker (``setup``)."""

    def __init__(self, config: GoogleConfig) -> None:
        from connectors.http.breaker import Breakers
        from connectors.http.caller import HttpCaller
        from connectors.http.pool import ConnectionPool
        from connectors.http.retry import RetryPolicy
        from connectors.secrets.refs import secret_ref

        self.config = config
        self._token = secret_ref(config.token).resolve().reveal().decode().strip()
        self.caller = HttpCaller(
            ConnectionPool(max_idle=4),
            timeout=config.timeout,
            retry=RetryPolicy(max_attempts=config.max_attempts, retry_non_idempotent=True),
            breakers=Breakers(),
        )

    def __call__(self, data: bytes, threshold: float) -> DocumentText:
        from connectors.http.request import Request

        c = self.config
        base = (c.endpoint or f"https://{c.location}-documentai.googleapis.com").rstrip("/")
        url = f"{base}/v1/projects/{c.project}/locations/{c.location}/processors/{c.processor}:process"
        body = json.dumps(
            {"rawDocument": {"content": base64.b64encode(data).decode(), "mimeType": mime_type(data)}}
        ).encode()
        headers = (("Authorization", f"Bearer {self._token}"), ("Content-Type", "application/json"))
        outcome = self.caller(Request("POST", url, headers, body))
        if not outcome.ok or not isinstance(outcome.body, dict):
            raise UnreadableDocument("provider_error", f"Google Document AI: {outcome.error or 'no document'}")
        return _document(outcome.body.get("document") or {}, threshold)


def _document(document: dict[str, Any], threshold: float) -> DocumentText:
    pages = document.get("pages") or []
    tokens = [t.get("layout", {}).get("confidence") for p in pages for t in p.get("tokens") or []]
    scores = [float(s) for s in tokens if s is not None] or [
        float(p["layout"]["confidence"]) for p in pages if p.get("layout", {}).get("confidence") is not None
    ]
    text = document.get("text") or ""
    if not text.strip() or not scores:
        raise UnreadableDocument("no_text", f"Document AI found no text ({len(pages)} page(s))")
    confidence = round(100.0 * sum(scores) / len(scores), 1)
    if confidence < threshold:
        raise UnreadableDocument(
            "ocr_confidence", f"Document AI confidence {confidence} is below the threshold {threshold}"
        )
    return DocumentText(text, max(1, len(pages)), "google_docai", confidence)
