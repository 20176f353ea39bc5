"""``ReadDocuments``: files -> one Arrow row per document (its text and how it was read), the
unreadable ones -> dead letters holding the original bytes and the reason.

Each file is one read task (documents are read whole; OCR is the cost, so the files spread
across workers). A row keeps a reference to the original bytes (path, size, SHA-256) rather
than the bytes, so outputs stay small and any result can be traced to the exact file read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

import apache_beam as beam
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

import connectors.arrow_coder  # noqa: F401 - registers the pa.Table coder
from connectors.documents.read import Remote, UnreadableDocument, document_format, read_document
from connectors.fileio import DEAD_LETTERS, read_each
from connectors.metrics import FILES, ROWS_DEAD, ROWS_IN, ROWS_OUT, TALLY, NodeCounters
from connectors.records import Reject, dead_letters_for_rejects, with_positions

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("document_id", pa.string()),  # the SHA-256 of the original bytes
        pa.field("path", pa.string()),
        pa.field("file_name", pa.string()),
        pa.field("format", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("pages", pa.int64()),
        pa.field("extraction_method", pa.string()),
        pa.field("ocr_confidence", pa.float64()),
        pa.field("text", pa.string()),
    ]
)
"""A document row (plus the position columns: the path, offset 1)."""


def document_row(path: str, data: bytes, min_ocr_confidence: float, remote: Remote | None = None) -> pa.Table:
    """The one-row table of the document at ``path``; raises :class:`UnreadableDocument`."""
    doc = read_document(path, data, min_ocr_confidence=min_ocr_confidence, remote=remote)
    row = {
        "document_id": hashlib.sha256(data).hexdigest(),
        "path": path,
        "file_name": PurePath(path).name,
        "format": document_format(path),
        "size_bytes": len(data),
        "pages": doc.pages,
        "extraction_method": doc.method,
        "ocr_confidence": doc.ocr_confidence,
        "text": doc.text,
    }
    table = pa.Table.from_pylist([row], schema=DOCUMENT_SCHEMA)
    return with_positions(table, path, [1])


def remote_reader(textract: Any = None, azure: Any = None, google: Any = None) -> Remote | None:
    """The remote reader of the one provider configured (Textract, Azure or Google), or None
    for the local readers: built on a worker (clients and circuit breakers are not picklable),
    by the ``document`` source and the ``read_documents`` step alike."""
    if textract is not None:
        from connectors.documents.textract import client, textract_document
        from connectors.http.breaker import CircuitBreaker

        textract_client, breaker = client(textract), CircuitBreaker()
        return lambda data, threshold: textract_document(textract_client, data, threshold, breaker)
    if azure is not None:
        from connectors.documents.azure import AzureReader

        return AzureReader(azure)
    if google is not None:
        from connectors.documents.google import GoogleReader

        return GoogleReader(google)
    return None


class _ReadDocumentFn(beam.DoFn):
    def __init__(
        self, source: str, min_ocr_confidence: float, run_id: str, textract: Any, azure: Any, google: Any
    ) -> None:
        self._source = source
        self._min = min_ocr_confidence
        self._run_id = run_id
        self._textract_config = textract
        self._azure_config = azure
        self._google_config = google
        self._remote: Remote | None = None

    def setup(self) -> None:
        self._counters = NodeCounters(self._source)
        self._remote = remote_reader(self._textract_config, self._azure_config, self._google_config)

    def process(self, path: str) -> Iterable[Any]:
        self._counters.inc(FILES)
        self._counters.inc(ROWS_IN)
        TALLY.add(self._source, 1)
        # not FileSystems.report_source_lineage: lineage names the document source as one
        # dataset (its folder), not per file, and the two would disagree
        with FileSystems.open(path, compression_type="uncompressed") as f:
            data = f.read()
        try:
            table = document_row(path, data, self._min, self._remote)
        except UnreadableDocument as exc:
            self._counters.inc(ROWS_DEAD)
            reject = Reject(path, 1, data, str(exc), exc.rule)
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTERS, dead_letters_for_rejects([reject], step=self._source, run_id=self._run_id)
            )
            return
        self._counters.inc(ROWS_OUT)
        yield table


class ReadDocuments(beam.PTransform):
    """Read document files into one row each; outputs ``rows`` and ``dead_letters``.

    Args:
        paths: the files (already matched from the globs).
        source_name: names counters and the dead letters' ``step``.
        min_ocr_confidence: Tesseract's mean word confidence (0-100) under which an OCR'd
            document is dead-lettered (rule ``ocr_confidence``) instead of passed on.
        run_id: stamped on dead letters.
        textract: a :class:`connectors.documents.textract.TextractConfig` to read PDFs and
            images with Amazon Textract instead of pypdf and Tesseract (the ``aws`` provider).
        azure: a :class:`connectors.documents.azure.AzureConfig`: the same with Azure AI
            Document Intelligence (the ``azure`` provider).
        google: a :class:`connectors.documents.google.GoogleConfig`: the same with a Google
            Document AI processor (the ``google`` provider).
    """

    def __init__(
        self,
        paths: list[str],
        *,
        source_name: str,
        min_ocr_confidence: float = 60.0,
        run_id: str = "",
        textract: Any = None,
        azure: Any = None,
        google: Any = None,
    ) -> None:
        super().__init__()
        self._paths = list(paths)
        self._fn = _ReadDocumentFn(source_name, min_ocr_confidence, run_id, textract, azure, google)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        return read_each(pbegin, self._paths, self._fn, each_label="Files", read_label="Read")
