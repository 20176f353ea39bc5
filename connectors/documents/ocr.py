"""Optical character recognition with Tesseract (Debian's ``tesseract-ocr``, ``make tesseract``),
through pytesseract.

Tesseract reports a confidence (0-100) per recognised word; the mean over the words is the
document's OCR confidence, so a caller can refuse text read from noise instead of passing
garbage downstream as if it were a document.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

from connectors.errors import BeamwrightError


class OcrUnavailable(BeamwrightError):
    """Tesseract is not installed, so scans and images cannot be read."""


@dataclass(frozen=True)
class OcrText:
    text: str
    confidence: float  # mean word confidence, 0-100; 0 when no word was found
    words: int


def check_available() -> None:
    """Raise :class:`OcrUnavailable` with the fix when the ``tesseract`` binary is missing."""
    if shutil.which("tesseract") is None:
        raise OcrUnavailable(
            "tesseract is not installed: scans and images need OCR",
            hint="install Debian's tesseract-ocr (`make tesseract` does it when root)",
        )


def recognise(image: Any) -> OcrText:
    """The text of a ``PIL.Image`` with Tesseract's mean word confidence; lines kept."""
    import pytesseract

    check_available()
    data = pytesseract.image_to_data(
        image.convert("L"), output_type=pytesseract.Output.DICT, config="--psm 6"
    )
    lines: dict[tuple[int, int, int], list[str]] = {}
    confidences: list[float] = []
    for n, word in enumerate(data["text"]):
        conf = float(data["conf"][n])
        if conf < 0 or not word.strip():
            continue
        confidences.append(conf)
        key = (data["block_num"][n], data["par_num"][n], data["line_num"][n])
        lines.setdefault(key, []).append(word)
    text = "\n".join(" ".join(words) for _, words in sorted(lines.items()))
    mean = sum(confidences) / len(confidences) if confidences else 0.0
    return OcrText(text, round(mean, 1), len(confidences))
