"""One document's bytes -> its text, page count and extraction method, or the reason it cannot
be read.

The method follows the content, not only the extension: a PDF page without a text layer is a
scan, so its images go through OCR; an image is always OCR'd. Unreadable documents raise
:class:`UnreadableDocument` with a ``rule`` the dead letters carry: ``encrypted`` (a PDF that
needs a password), ``no_text`` (nothing to read, neither text nor images), ``ocr_confidence``
(Tesseract's mean word confidence under the threshold: noise, not a document), ``corrupt``
(the container does not parse) and ``format`` (an extension no reader handles).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

from connectors.documents.ocr import OcrText, recognise
from connectors.errors import BeamwrightError

FORMATS = {
    ".pdf": "pdf", ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image",
    ".tiff": "image", ".docx": "docx", ".html": "html", ".htm": "html", ".txt": "text",
}
"""Extension -> reader."""

METHODS = ("pdf_text", "ocr", "textract", "azure_read", "google_docai", "docx", "html", "text")

Remote = Callable[[bytes, float], "DocumentText"]
"""A provider's reader of PDFs and images: (bytes, confidence threshold) -> text."""


class UnreadableDocument(BeamwrightError):
    """A document whose text cannot be had; ``rule`` is the short reason for dead letters."""

    def __init__(self, rule: str, problem: str) -> None:
        super().__init__(problem)
        self.rule = rule


@dataclass(frozen=True)
class DocumentText:
    text: str
    pages: int
    method: str
    ocr_confidence: float | None = None  # mean Tesseract word confidence when OCR was used


def document_format(path: str) -> str:
    """The reader for ``path``, from its extension; :class:`UnreadableDocument` otherwise."""
    reader = FORMATS.get(PurePath(path).suffix.lower())
    if reader is None:
        raise UnreadableDocument(
            "format", f"no reader for '{PurePath(path).suffix}' (readable: {sorted(FORMATS)})"
        )
    return reader


def read_document(
    path: str, data: bytes, *, min_ocr_confidence: float = 60.0, remote: Remote | None = None
) -> DocumentText:
    """The text of the document at ``path`` whose bytes are ``data``; with ``remote`` (a cloud
    provider), PDFs and images are read by it (an encrypted PDF is still refused here: no
    provider can read it and the reason is better said locally)."""
    reader = document_format(path)
    if remote is not None and reader in ("pdf", "image"):
        if reader == "pdf":
            _refuse_encrypted(data)
        return remote(data, min_ocr_confidence)
    if reader == "pdf":
        return _pdf(data, min_ocr_confidence)
    if reader == "image":
        return _image(data, min_ocr_confidence)
    if reader == "docx":
        return _checked(_docx(data), 1, "docx")
    if reader == "html":
        return _checked(_html(data), 1, "html")
    return _checked(data.decode("utf-8", errors="replace"), 1, "text")


def _checked(text: str, pages: int, method: str, confidence: float | None = None) -> DocumentText:
    if not text.strip():
        raise UnreadableDocument("no_text", f"no text found ({method}, {pages} page(s))")
    return DocumentText(text, pages, method, confidence)


def _ocr_checked(results: list[OcrText], pages: int, threshold: float) -> DocumentText:
    words = sum(r.words for r in results)
    if words == 0:
        raise UnreadableDocument("no_text", f"OCR found no words ({pages} page(s))")
    confidence = round(sum(r.confidence * r.words for r in results) / words, 1)
    if confidence < threshold:
        raise UnreadableDocument(
            "ocr_confidence",
            f"OCR confidence {confidence} is below the threshold {threshold} ({words} words)",
        )
    return _checked("\n".join(r.text for r in results), pages, "ocr", confidence)


def _image(data: bytes, threshold: float) -> DocumentText:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise UnreadableDocument("corrupt", f"not a readable image: {exc}") from None
    return _ocr_checked([recognise(image)], 1, threshold)


def _refuse_encrypted(data: bytes) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        encrypted = PdfReader(io.BytesIO(data)).is_encrypted
    except PdfReadError as exc:
        raise UnreadableDocument("corrupt", f"not a readable PDF: {exc}") from None
    if encrypted:
        raise UnreadableDocument("encrypted", "the PDF is encrypted (needs a password)")


def _pdf(data: bytes, threshold: float) -> DocumentText:
    from PIL import Image
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableDocument("encrypted", "the PDF is encrypted (needs a password)")
        pages = list(reader.pages)
        texts = [page.extract_text() or "" for page in pages]
    except PdfReadError as exc:
        raise UnreadableDocument("corrupt", f"not a readable PDF: {exc}") from None
    if any(t.strip() for t in texts):
        return _checked("\n".join(texts), len(pages), "pdf_text")
    scans: list[OcrText] = []
    for page in pages:  # no text layer: a scan, read the page images
        for picture in page.images:
            scans.append(recognise(Image.open(io.BytesIO(picture.data))))
    if not scans:
        raise UnreadableDocument("no_text", f"the PDF has no text and no images ({len(pages)} page(s))")
    return _ocr_checked(scans, len(pages), threshold)


def _docx(data: bytes) -> str:
    import zipfile

    from docx import Document

    try:
        document = Document(io.BytesIO(data))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UnreadableDocument("corrupt", f"not a readable DOCX: {exc}") from None
    lines = [p.text for p in document.paragraphs]
    for table in document.tables:
        lines += [" | ".join(cell.text for cell in row.cells) for row in table.rows]
    return "\n".join(lines)


_BLOCK = re.compile(r"</?(p|div|br|tr|li|h[1-6]|table|title)\b[^>]*>", re.I)


def _html(data: bytes) -> str:
    """The visible text of an HTML page, one line per block element (scripts and styles out)."""
    from html.parser import HTMLParser

    class _Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.parts: list[str] = []
            self.skip = 0

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag in ("script", "style", "head"):
                self.skip += 1
            elif _BLOCK.match(f"<{tag}>"):
                self.parts.append("\n")

        def handle_endtag(self, tag: str) -> None:
            if tag in ("script", "style", "head"):
                self.skip = max(0, self.skip - 1)
            elif _BLOCK.match(f"</{tag}>"):
                self.parts.append("\n")

        def handle_data(self, text: str) -> None:
            if not self.skip:
                self.parts.append(text)

    parser = _Text()
    parser.feed(data.decode("utf-8", errors="replace"))
    return "\n".join(line.strip() for line in "".join(parser.parts).splitlines() if line.strip())
