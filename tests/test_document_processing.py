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


# --------------------------------------------------------------------------- fields and PII


def test_pii_checksums_decide() -> None:
    from transforms.pii import find_pii, iban_valid, luhn_valid, mask_pii

    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89370400440532013001")
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    text = "card 4111 1111 1111 1112, iban DE89370400440532013001, ssn 666-12-3456, ref 2026-01-15"
    assert find_pii(text) == []  # checksums and SSN rules refuse every look-alike
    masked = mask_pii("mail a.b@c.org, card 5555 5555 5555 4444, ssn 123-45-6789, tel +44 20 7946 0958")
    assert masked == "mail [EMAIL], card [CARD ****4444], ssn [NATIONAL_ID], tel [PHONE]"


def test_field_extractor_dead_letters_other_types() -> None:
    import pyarrow as pa

    from transforms.document_fields import DocumentFieldExtractor

    extractor = DocumentFieldExtractor(step_name="fields", document_types=["receipt"], mask_pii=True)
    table = pa.Table.from_pylist([
        {"text": "Corner Cafe\nRECEIPT\nDate: 2026-02-01\nTOTAL: 3.50", "extraction_method": "ocr", "ocr_confidence": 80.0},
        {"text": "INVOICE\nInvoice Number: 1\nTotal: 3.00", "extraction_method": "text", "ocr_confidence": None},
    ])
    result = extractor.process(table)
    (row,) = result.rows.to_pylist()
    assert row["merchant"] == "Corner Cafe" and row["total_amount"] == 3.5
    assert dict(row["confidences"])["total_amount"] == pytest.approx(0.95 * 0.8)  # scaled by OCR
    assert row["retention_class"] == "financial-10y" and row["pii_count"] == 0
    assert result.dead_letters.column("rule").to_pylist() == ["document_type"]
    assert "classified as invoice" in result.dead_letters.column("errorMessage")[0].as_py()
    with pytest.raises(ValueError, match="supported"):
        DocumentFieldExtractor(step_name="f", document_types=["passport"])


def test_accuracy_score_counts_wrong_and_missing_values() -> None:
    from pipelines.dev.document_accuracy import score

    truth = {"a.pdf": {"document_type": "invoice", "fields": {"vendor": "A", "total_amount": 10.0}},
             "b.pdf": {"document_type": "invoice", "fields": {"vendor": "B", "total_amount": 5.0}}}
    report = score(truth, {"a.pdf": {"vendor": "A", "total_amount": 10.001}, "b.pdf": {"vendor": "X"}})
    assert report["invoice"]["vendor"] == {"tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5}
    assert report["invoice"]["total_amount"]["precision"] == 1.0
    assert report["invoice"]["total_amount"]["recall"] == 0.5


# --------------------------------------------------------------------------- the template


def expand(out: Path, **params: Any) -> PipelineSpec:
    import templates
    from pipelines.loading import resolve_parameters

    template = templates.get_template("document_processing")
    return template.expand(resolve_parameters(template.parameters, {"output_dir": str(out), **params}))


def test_providers_checked_naming_what_they_need(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"choose from \[.local., .azure., .aws., .google.\]"):
        expand(tmp_path, ai_providers=["openai"])
    with pytest.raises(ValueError, match="google provider needs all three"):
        expand(tmp_path, ai_providers=["google"], google_project="p")
    with pytest.raises(ValueError, match="azure provider needs both"):
        expand(tmp_path, ai_providers=["azure"])
    with pytest.raises(ValueError, match="name one provider"):
        expand(tmp_path, ai_providers=["local", "aws"])
    spec = expand(tmp_path, document_types=["invoice"], output_formats=["structured_data"], compliance_required=False)
    assert [s.name for s in spec.sinks] == ["invoice_parquet", "rejections"]
    assert spec.steps[0].mask_pii is False and spec.steps[0].document_types == ["invoice"]


MIN_PRECISION = MIN_RECALL = 0.9


@needs_tesseract
def test_samples_end_to_end_accuracy_masking_and_lineage(tmp_path: Path) -> None:
    """The template on every shipped document: each written or dead-lettered, counts reconcile,
    PII masked in the outputs, classifications and masking in lineage, and every invoice field
    at or above the precision and recall floor (``beamwright bench --documents`` prints them)."""
    from pipelines.dev.document_accuracy import measure, predictions

    out = tmp_path / "dp"
    report = measure(out)
    assert report["reconciled"]
    truth_files = {Path(n).name for n, t in TRUTH.items()}
    written = predictions(out)
    dead = [json.loads(line) for f in (out / "alerts" / "dead_letters").glob("*.jsonl") for line in f.read_text().splitlines()]
    dead_files = {Path(d["source"]).name for d in dead}
    assert set(written) | dead_files == truth_files and not set(written) & dead_files
    assert {Path(d["source"]).name: d["rule"] for d in dead} == {
        Path(n).name: t["expect_rule"] for n, t in TRUTH.items() if t["fields"] is None
    }
    for name, row in written.items():
        assert row["document_type"] == TRUTH[next(n for n in TRUTH if Path(n).name == name)]["document_type"]
    assert written["invoice_12_two_pages.pdf"]["pages"] == 2
    assert written["invoice_11_worn_scan.jpg"]["extraction_method"] == "ocr"
    for field, c in report["fields"]["invoice"].items():
        assert c["precision"] >= MIN_PRECISION and c["recall"] >= MIN_RECALL, (field, c)
    for name, row in written.items():
        pii = TRUTH[name]["pii"]
        assert pii and not any(value in row["text"] for value in pii), name
        assert row["retention_class"] in ("financial-10y", "contract-term+6y")
    tables = {p.name: pq.read_table(p) for p in (out / "tables").glob("*")}
    assert not tables  # output_formats: json only in measure()
    events = [json.loads(line) for line in (out / "lineage" / "events.jsonl").read_text().splitlines()]
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    invoice_out = next(d for d in complete["outputs"] if d["name"].endswith("json/invoices"))
    text_lineage = invoice_out["facets"]["columnLineage"]["fields"]["text"]["inputFields"][0]
    assert any(t.get("masking") for t in text_lineage["transformations"])


def _textract_lines(text: str, confidence: float) -> list[dict[str, Any]]:
    """LINE blocks in DetectDocumentText's documented shape (listed bottom-up: the reader
    must order them by their bounding box)."""
    lines = text.splitlines()
    return [
        {"BlockType": "LINE", "Id": f"l{n}", "Text": line, "Confidence": confidence, "Page": 1,
         "Geometry": {"BoundingBox": {"Top": n / len(lines), "Left": 0.1, "Width": 0.8, "Height": 0.02}}}
        for n, line in reversed(list(enumerate(lines)))
    ]


def test_aws_provider_reads_scans_with_textract_on_moto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ai_providers=aws: PDFs and images go to Textract (boto3 against moto's server, whose
    DetectDocumentText answers the blocks it is given), DOCX/HTML/text are read locally, the
    encrypted PDF is still refused locally, and a weak Textract reading is dead-lettered."""
    from moto.textract.models import TextractBackend

    from tests.servers.moto import moto_endpoint

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    docs = tmp_path / "in"
    docs.mkdir()
    for name in ("invoice_04_scan.png", "invoice_06.docx", "unreadable/encrypted.pdf"):
        (docs / Path(name).name).write_bytes((DOCS / name).read_bytes())
    truth = TRUTH["invoice_04_scan.png"]["fields"]
    text = "\n".join(
        ["INVOICE", f"From: {truth['vendor']}", f"Invoice Number: {truth['invoice_number']}",
         f"Invoice Date: {truth['invoice_date']}", f"Due Date: {truth['due_date']}",
         f"Currency: {truth['currency']}", f"Subtotal: {truth['net_amount']:.2f}",
         f"VAT (20%): {truth['tax_amount']:.2f}", f"Total: {truth['total_amount']:.2f}"]
    )
    monkeypatch.setattr(TextractBackend, "BLOCKS", _textract_lines(text, 91.5))
    with moto_endpoint() as url:
        out = tmp_path / "out"
        spec = expand(out, document_paths=[str(docs / "*")], ai_providers=["aws"], aws_endpoint_url=url,
                      output_formats=["json"], error_threshold=0.9)
        summary = run_spec(spec)
        monkeypatch.setattr(TextractBackend, "BLOCKS", _textract_lines(text, 30.0))
        weak = run_spec(expand(tmp_path / "weak", document_paths=[str(docs / "*.png")], ai_providers=["aws"],
                               aws_endpoint_url=url, output_formats=["json"], error_threshold=1.0))
    assert summary.reconciled and summary.node("documents").rows_in == 3
    rows = {r["file_name"]: r for r in (json.loads(line) for f in (out / "json" / "invoices").glob("*.jsonl")
                                         for line in f.read_text().splitlines())}
    scan = rows["invoice_04_scan.png"]
    assert scan["extraction_method"] == "textract" and scan["ocr_confidence"] == 91.5
    assert scan["text"].splitlines()[:2] == ["INVOICE", f"From: {truth['vendor']}"]  # ordered by position
    assert scan["invoice_number"] == truth["invoice_number"] and scan["total_amount"] == truth["total_amount"]
    assert dict(scan["confidences"])["vendor"] == pytest.approx(0.95 * 0.915, abs=1e-3)
    assert rows["invoice_06.docx"]["extraction_method"] == "docx"
    dead = [json.loads(line) for f in (out / "alerts" / "dead_letters").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert [(Path(d["source"]).name, d["rule"]) for d in dead] == [("encrypted.pdf", "encrypted")]
    weak_dead = [json.loads(line) for f in (tmp_path / "weak" / "alerts" / "dead_letters").glob("*.jsonl")
                 for line in f.read_text().splitlines()]
    assert [d["rule"] for d in weak_dead] == ["ocr_confidence"] and weak.node("documents").rows_out == 0


class _DocumentIntelligence:
    """Azure Document Intelligence's documented REST exchange on loopback: POST analyze ->
    202 + Operation-Location (a 429 with Retry-After first), GET -> running, then succeeded
    with ``analyzeResult`` (content, pages[].words[].confidence). It does not read the bytes:
    the test gives the content it answers, as moto does for Textract."""

    def __init__(self, key: str, content: str, confidence: float) -> None:
        from http.server import BaseHTTPRequestHandler

        from tests.servers.http import JsonHandler, LoopbackServer

        self.key, self.content, self.confidence = key, content, confidence
        self.requests: list[tuple[str, str]] = []
        self.throttle_next = True
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                body = self._body()
                owner.requests.append(("POST", self.path))
                if self.headers.get("Ocp-Apim-Subscription-Key") != owner.key:
                    return self._reply(401, {"error": {"code": "401", "message": "Access denied"}})
                if owner.throttle_next:
                    owner.throttle_next = False
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                assert body and self.path.endswith(":analyze?api-version=2024-11-30")
                self.send_response(202)
                self.send_header("Operation-Location", f"{owner.url}/operations/{len(owner.requests)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None

            def do_GET(self) -> None:  # noqa: N802
                owner.requests.append(("GET", self.path))
                polls = sum(1 for m, p in owner.requests if m == "GET" and p == self.path)
                if polls == 1:
                    return self._reply(200, {"status": "running"})
                words = [{"content": w, "confidence": owner.confidence} for w in owner.content.split()]
                return self._reply(200, {"status": "succeeded", "analyzeResult": {
                    "apiVersion": "2024-11-30", "modelId": "prebuilt-read", "content": owner.content,
                    "pages": [{"pageNumber": 1, "words": words}]}})

        assert issubclass(Handler, BaseHTTPRequestHandler)
        self.server = LoopbackServer(Handler, self)
        self.url = self.server.url


def test_azure_provider_through_the_http_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = TRUTH["receipt_02_scan.png"]["fields"]
    content = f"{truth['merchant']}\nRECEIPT\nDate: {truth['date']}\nTOTAL: {truth['total_amount']:.2f}"
    api = _DocumentIntelligence("k-123", content, 0.97)
    monkeypatch.setenv("AZURE_DI_KEY", "k-123")
    try:
        docs = tmp_path / "in"
        docs.mkdir()
        (docs / "receipt.png").write_bytes((DOCS / "receipt_02_scan.png").read_bytes())
        out = tmp_path / "out"
        summary = run_spec(expand(out, document_paths=[str(docs / "*")], ai_providers=["azure"],
                                  azure_endpoint=api.url, azure_key="env:AZURE_DI_KEY", output_formats=["json"]))
        monkeypatch.setenv("AZURE_DI_KEY", "wrong")
        refused = run_spec(expand(tmp_path / "refused", document_paths=[str(docs / "*")], ai_providers=["azure"],
                                  azure_endpoint=api.url, azure_key="env:AZURE_DI_KEY", error_threshold=1.0))
    finally:
        api.server.close()
    assert summary.reconciled
    (row,) = [json.loads(line) for f in (out / "json" / "receipts").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert row["extraction_method"] == "azure_read" and row["ocr_confidence"] == 97.0
    assert (row["merchant"], row["date"], row["total_amount"]) == (truth["merchant"], truth["date"], truth["total_amount"])
    assert [m for m, _ in api.requests[:4]] == ["POST", "POST", "GET", "GET"]  # 429 retried, polled until done
    assert refused.node("documents").rows_dead_lettered == 1
    (dead,) = [json.loads(line) for f in (tmp_path / "refused" / "alerts" / "dead_letters").glob("*.jsonl")
               for line in f.read_text().splitlines()]
    assert dead["rule"] == "provider_error" and "401" in dead["errorMessage"] and "wrong" not in dead["errorMessage"]


class _DocumentAi:
    """Google Document AI's documented ``:process`` exchange on loopback: a 503 with
    Retry-After first, then ``{"document": {"text", "pages": [{"layout", "tokens"}]}}`` for the
    content the test gives (it does not read the bytes; it checks they are the file's)."""

    def __init__(self, token: str, content: str, confidence: float, expect: bytes) -> None:
        from tests.servers.http import JsonHandler, LoopbackServer

        self.requests: list[str] = []
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                import base64

                body = json.loads(self._body())
                owner.requests.append(self.path)
                if self._bearer() != token:
                    return self._reply(401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}})
                if len(owner.requests) == 1:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                raw = body["rawDocument"]
                assert base64.b64decode(raw["content"]) == expect and raw["mimeType"] == "image/png"
                tokens = [{"layout": {"confidence": confidence}} for _ in content.split()]
                return self._reply(200, {"document": {"text": content, "pages": [
                    {"pageNumber": 1, "layout": {"confidence": 0.9}, "tokens": tokens}]}})

        self.server = LoopbackServer(Handler, self)
        self.url = self.server.url


def test_google_provider_through_the_http_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    truth = TRUTH["receipt_02_scan.png"]["fields"]
    content = f"{truth['merchant']}\nRECEIPT\nDate: {truth['date']}\nTOTAL: {truth['total_amount']:.2f}"
    data = (DOCS / "receipt_02_scan.png").read_bytes()
    api = _DocumentAi("tok-1", content, 0.88, data)
    monkeypatch.setenv("GOOGLE_ACCESS_TOKEN", "tok-1")
    try:
        docs = tmp_path / "in"
        docs.mkdir()
        (docs / "receipt.png").write_bytes(data)
        out = tmp_path / "out"
        summary = run_spec(expand(
            out, document_paths=[str(docs / "*")], ai_providers=["google"], google_project="proj",
            google_location="eu", google_processor="ocr1", google_token="env:GOOGLE_ACCESS_TOKEN",
            google_endpoint=api.url, output_formats=["json"],
        ))
    finally:
        api.server.close()
    assert summary.reconciled
    assert api.requests == ["/v1/projects/proj/locations/eu/processors/ocr1:process"] * 2  # 503 retried
    (row,) = [json.loads(line) for f in (out / "json" / "receipts").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert row["extraction_method"] == "google_docai" and row["ocr_confidence"] == 88.0
    assert (row["merchant"], row["total_amount"]) == (truth["merchant"], truth["total_amount"])


def test_textract_breaker_stops_calling_a_dead_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Textract unreachable (a closed loopback port): every document is a provider_error dead
    letter, and once the breaker opens the rest are refused without a call."""
    import socket

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    docs = tmp_path / "in"
    docs.mkdir()
    for n in range(12):
        (docs / f"scan_{n:02d}.png").write_bytes((DOCS / "receipt_02_scan.png").read_bytes())
    spec = PipelineSpec.model_validate({
        "name": "dead_textract",
        "run": {"error_threshold": 1.0},
        "sources": [{"name": "docs", "type": "document", "paths": [str(docs / "*.png")], "provider": "aws",
                     "aws": {"endpoint_url": f"http://127.0.0.1:{port}", "max_attempts": 1}}],
        "steps": [],
        "sinks": [{"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}],
        "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl"},
        "lineage": {"enabled": False},
    })
    summary = run_spec(spec)
    letters = [json.loads(line) for f in (tmp_path / "dead").glob("*.jsonl") for line in f.read_text().splitlines()]
    assert summary.reconciled and len(letters) == 12 and {d["rule"] for d in letters} == {"provider_error"}
    unreachable = [d for d in letters if "could not be reached" in d["errorMessage"]]
    opened = [d for d in letters if "circuit open" in d["errorMessage"]]
    assert len(unreachable) + len(opened) == 12 and opened
