"""Azure AI Document Intelligence (the ``prebuilt-read`` model, REST API 2024-11-30) as the OCR
of the ``azure`` provider.

The documented exchange: ``POST {endpoint}/documentintelligence/documentModels/prebuilt-read:analyze
?api-version=2024-11-30`` with the document's bytes and the ``Ocp-Apim-Subscription-Key``
header answers ``202`` and an ``Operation-Location``; ``GET`` on it answers ``{"status":
"notStarted"|"running"|"succeeded"|"failed", "analyzeResult": {"content", "pages": [{"words":
[{"content", "confidence" (0-1)}]}]}}``, honouring ``Retry-After`` between polls. The text is
``content``; the confidence the mean word confidence (scaled to 0-100 like Tesseract's).

Calls go through the project's HTTP client (:class:`connectors.http.caller.HttpCaller`): a
pooled connection, retries with jittered backoff and ``Retry-After`` (the POST only on 429 or
503 with ``Retry-After``, as it is not idempotent), and a circuit breaker per host, so a down
service costs one short refusal per document rather than every retry. The key is a secret
reference resolved on the worker (``env:``, ``file:`` or a secret store). What is still refused
is an :class:`~connectors.documents.read.UnreadableDocument` (``provider_error``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connectors.documents.read import DocumentText, UnreadableDocument

API_VERSION = "2024-11-30"
KEY_HEADER = "Ocp-Apim-Subscription-Key"


@dataclass(frozen=True)
class AzureConfig:
    endpoint: str
    key: dict[str, Any]  # a secret reference: {env: VAR} | {file: PATH} | {store: ..., name: ...}
    model: str = "prebuilt-read"
    max_attempts: int = 4
    timeout: float = 30.0  # per request
    max_wait: float = 120.0  # for one analysis, polls included


class AzureReader:
    """Reads documents with Document Intelligence; one per worker (``setup``)."""

    def __init__(self, config: AzureConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        from connectors.http.breaker import Breakers
        from connectors.http.caller import HttpCaller
        from connectors.http.pool import ConnectionPool
        from connectors.http.retry import RetryPolicy
        from connectors.secrets.refs import secret_ref

        self.config = config
        self._key = secret_ref(config.key).resolve().reveal().decode().strip()
        self._sleep = sleep
        self.caller = HttpCaller(
            ConnectionPool(max_idle=4),
            timeout=config.timeout,
            retry=RetryPolicy(max_attempts=config.max_attempts),
            breakers=Breakers(),
            sleep=sleep,
        )

    def __call__(self, data: bytes, threshold: float) -> DocumentText:
        from connectors.http.request import Request

        url = (
            f"{self.config.endpoint.rstrip('/')}/documentintelligence/documentModels/"
            f"{self.config.model}:analyze?api-version={API_VERSION}"
        )
        key = ((KEY_HEADER, self._key),)
        posted = self.caller(Request("POST", url, (*key, ("Content-Type", "application/octet-stream")), data))
        location = posted.headers.get("operation-location") if posted.ok else None
        if not location:
            raise UnreadableDocument(
                "provider_error", f"Azure Document Intelligence did not accept the document: {posted.error or 'no Operation-Location'}"
            )
        deadline = time.monotonic() + self.config.max_wait
        while True:
            polled = self.caller(Request("GET", location, key))
            if not polled.ok or not isinstance(polled.body, dict):
                raise UnreadableDocument("provider_error", f"Azure Document Intelligence: {polled.error or 'no result'}")
            status = polled.body.get("status")
            if status == "succeeded":
                return _document(polled.body.get("analyzeResult") or {}, threshold)
            if status == "failed":
                error = polled.body.get("error") or {}
                raise UnreadableDocument(
                    "provider_error", f"Azure Document Intelligence failed: {error.get('code')}: {error.get('message')}"
                )
            if time.monotonic() > deadline:
                raise UnreadableDocument("provider_error", f"Azure analysis not done after {self.config.max_wait} s")
            self._sleep(_retry_after(polled.headers.get("retry-after")))


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value), 0.0), 10.0) if value is not None else 1.0
    except ValueError:
        return 1.0


def _document(result: dict[str, Any], threshold: float) -> DocumentText:
    pages = result.get("pages") or []
    words = [w for page in pages for w in page.get("words") or []]
    text = result.get("content") or ""
    if not words or not text.strip():
        raise UnreadableDocument("no_text", f"Azure found no text ({len(pages)} page(s))")
    confidence = round(100.0 * sum(float(w.get("confidence", 0.0)) for w in words) / len(words), 1)
    if confidence < threshold:
        raise UnreadableDocument(
            "ocr_confidence", f"Azure confidence {confidence} is below the threshold {threshold} ({len(words)} words)"
        )
    return DocumentText(text, max(1, len(pages)), "azure_read", confidence)
