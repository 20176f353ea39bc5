"""document_processing with its inputs from Kafka: messages naming object paths, read by the
``read_documents`` step into the rows the ``document`` source makes of the same files; a
missing or unreadable document is a dead letter of its message (original bytes, Kafka
position, reason), and counts balance."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from connectors.documents.source import document_row
from connectors.records import strip_positions, with_positions
from pipelines.run import run_spec
from pipelines.spec import PipelineSpec
from templates.base import SAMPLE_DATA
from tests import kafka_broker as fixtures
from transforms.read_documents import DocumentReader

DOCS = SAMPLE_DATA / "documents"
# documents read without OCR, so the test stays fast and needs no tesseract
READABLE = ["invoice_01.pdf", "contract_02.docx", "invoice_08.html", "invoice_09.txt", "receipt_01.pdf"]
ENCRYPTED = str(DOCS / "unreadable" / "encrypted.pdf")


def test_reader_rows_equal_the_sources_and_bad_paths_are_dead_letters(tmp_path: Path) -> None:
    """The processor alone (no Beam): rows as document_row makes them, with the input rows'
    positions; a missing file, an encrypted PDF and a null path dead-letter their input rows."""
    good = str(DOCS / "invoice_01.pdf")
    missing = str(tmp_path / "gone.pdf")
    paths = [good, missing, None, ENCRYPTED, f"file://{DOCS / 'invoice_09.txt'}"]
    table = with_positions(pa.table({"path": pa.array(paths, pa.string())}), "refs/0", [10, 11, 12, 13, 14])
    reader = DocumentReader(step_name="docs", run_id="r1")
    reader.setup()
    result = reader.process(table)
    assert result.rows.num_rows + result.dead_letters.num_rows == table.num_rows
    first = result.rows.slice(0, 1)
    assert strip_positions(first).equals(strip_positions(document_row(good, Path(good).read_bytes(), 60.0)))
    assert result.rows.column("_bw_offset").to_pylist() == [10, 14]
    assert "Acme Tools GmbH" in result.rows.column("text")[1].as_py()
    dead = result.dead_letters.to_pylist()
    assert [(d["offset"], d["rule"], d["source"]) for d in dead] == [
        (11, "missing", "refs/0"), (12, "path", "refs/0"), (13, "encrypted", "refs/0"),
    ]
    assert missing in dead[0]["errorMessage"] and json.loads(dead[0]["payloadString"]) == {"path": missing}
    assert dict(result.rule_failures) == {"missing": 1, "path": 1, "encrypted": 1}
    with pytest.raises(ValueError, match="no field 'path'.*set path_field"):
        reader.process(pa.table({"uri": [good]}))


def _expand(out: Path, **params: Any) -> PipelineSpec:
    from pipelines.loading import resolve_parameters
    from templates.document_processing import TEMPLATE

    values = {"output_dir": str(out), "output_formats": ["json"], "compliance_required": False, **params}
    return TEMPLATE.expand(resolve_parameters(TEMPLATE.parameters, values))


def _written(out: Path) -> dict[str, dict[str, Any]]:
    rows = [json.loads(line) for f in (out / "json").rglob("*.jsonl") for line in f.read_text().splitlines()]
    return {r["path"]: r for r in rows}


@pytest.mark.slow
def test_template_reads_document_references_from_kafka(tmp_path: Path, kafka_broker: Any, topic: Any) -> None:
    servers, refs = kafka_broker.bootstrap_servers, topic(partitions=2)
    readable = [str(DOCS / name) for name in READABLE]
    missing = str(tmp_path / "not_there.pdf")
    messages = [json.dumps({"path": p}).encode() for p in [*readable, missing, ENCRYPTED]]
    fixtures.produce(servers, refs, messages, partitions=2)

    from_kafka = tmp_path / "kafka"
    spec = _expand(from_kafka, kafka_topic=refs, kafka_bootstrap_servers=servers, kafka_group_id="dp-test")
    assert [s.type for s in spec.sources] == ["kafka"] and spec.steps[0].type == "read_documents"
    summary = run_spec(spec)
    from_files = tmp_path / "files"
    files_summary = run_spec(_expand(from_files, document_paths=readable))

    assert summary.reconciled and files_summary.reconciled
    step = summary.node("documents")
    assert (step.rows_in, step.rows_out, step.rows_dead_lettered) == (7, 5, 2)
    kafka_rows, file_rows = _written(from_kafka), _written(from_files)
    assert set(kafka_rows) == set(readable)
    assert kafka_rows == file_rows  # same document_id, text, type and fields as the document source

    dead = [json.loads(line) for f in (from_kafka / "alerts" / "dead_letters").glob("*.jsonl")
            for line in f.read_text().splitlines()]
    by_rule = {d["rule"]: d for d in dead}
    assert set(by_rule) == {"missing", "encrypted"} and len(dead) == 2
    for rule, path in (("missing", missing), ("encrypted", ENCRYPTED)):
        letter = by_rule[rule]
        assert base64.b64decode(letter["payloadBytes"]) == json.dumps({"path": path}).encode()
        assert letter["source"].startswith(f"{refs}/") and letter["offset"] is not None
        assert letter["step"] == "documents" and path in letter["errorMessage"]
