"""The document_processing template and its parts: the shipped sample documents, the
``document`` source (text PDFs, OCR of scans and images, DOCX, HTML, text; unreadable documents
dead-lettered with the reason and the original bytes)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.dev.document_samples import generate
from pipelines.run import run_spec
from pipelines.spec import PipelineSpec
from templates.base import SAMPLE_DATA

DOCS = SAMPLE_DATA / "documents"
TRUTH = json.loads((DOCS / "ground_truth.json").read_text())
needs_tesseract = pytest.mark.skipif(
    shutil.which("tesseract") is None, reason="tesseract-ocr not installed (make tesseract)"
)


def test_samples_are_deterministic_and_small(tmp_path: Path) -> None:
    truth = generate(tmp_path)
    assert truth == TRUTH
    for name in truth:
        if name == "unreadable/encrypted.pdf":  # pypdf draws its key at random
            continue
        assert (tmp_path / name).read_bytes() == (DOCS / name).read_bytes(), name
    total = sum(p.stat().st_size for p in DOCS.rglob("*") if p.is_file())
    assert total < 2_000_000


def test_reader_methods_and_reasons() -> None:
    from connectors.documents.read import UnreadableDocument, read_document

    def read(name: str) -> Any:
        return read_document(name, (DOCS / name).read_bytes())

    assert read("invoice_01.pdf").method == "pdf_text"
    assert "Invoice Number: INV-2026-1000" in read("invoice_01.pdf").text
    assert read("contract_02.docx").method == "docx"
    assert read("invoice_08.html").text.splitlines()[:2] == [TRUTH["invoice_08.html"]["fields"]["vendor"], "TAX INVOICE"]
    for name, rule in (("unreadable/encrypted.pdf", "encrypted"), ("unreadable/blank.pdf", "no_text")):
        with pytest.raises(UnreadableDocument) as caught:
            read(name)
        assert caught.value.rule == rule
    with pytest.raises(UnreadableDocument) as caught:
        read_document("x.xls", b"")
    assert caught.value.rule == "format"


@needs_tesseract
def test_scans_go_through_ocr_and_noise_is_refused() -> None:
    from connectors.documents.read import UnreadableDocument, read_document

    for name in ("invoice_04_scan.png", "invoice_07_scan.pdf"):
        doc = read_document(name, (DOCS / name).read_bytes())
        assert doc.method == "ocr" and doc.ocr_confidence > 80
        assert TRUTH[name]["fields"]["invoice_number"] in doc.text
    with pytest.raises(UnreadableDocument) as caught:
        read_document("noise.png", (DOCS / "unreadable" / "noise.png").read_bytes())
    assert caught.value.rule == "ocr_confidence"


@needs_tesseract
def test_document_source_writes_or_dead_letters_every_file(tmp_path: Path) -> None:
    spec = PipelineSpec.model_validate(
        {
            "name": "docs",
            "run": {"error_threshold": 1.0},
            "sources": [{"name": "docs", "type": "document", "paths": [str(DOCS / "*.*"), str(DOCS / "unreadable/*")]}],
            "steps": [],
            "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "parquet"}],
            "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl"},
            "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        }
    )
    summary = run_spec(spec)
    files = [n for n in TRUTH]  # ground_truth.json itself is matched too: a 'format' dead letter
    source = summary.node("docs")
    assert source.rows_in == len(files) + 1
    assert source.rows_out == len(files) - 3
    assert summary.reconciled
    table = pq.read_table(tmp_path / "out")
    assert sorted(table.column("file_name").to_pylist()) == sorted(
        Path(n).name for n in files if TRUTH[n]["fields"] is not None
    )
    letters = [json.loads(line) for f in (tmp_path / "dead").glob("*.jsonl") for line in f.read_text().splitlines()]
    rules = {Path(d["source"]).name: d["rule"] for d in letters}
    assert rules == {"encrypted.pdf": "encrypted", "blank.pdf": "no_text", "noise.png": "ocr_confidence",
                     "ground_truth.json": "format"}
    encrypted = next(d for d in letters if d["rule"] == "encrypted")
    assert encrypted["payloadBytes"]  # the original bytes are kept
