"""A step's dead letter of a document carries the document's original bytes (the source knows
its files), and with dead_letter.redact (compliance) no format's dead letter keeps unmasked
text: bytes dropped, the row's classified fields or the whole payload replaced, alike for
every format."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.loading import spec_from_data
from pipelines.run import run_spec
from transforms.redact import UNPARSEABLE, redact_table

PII = "jane.doe@example.com"
NOTE = f"Dear team, lunch is at noon. Write to {PII}.\n"


def _run(tmp_path: Path, redact: bool) -> tuple[Any, list[dict]]:
    (tmp_path / "docs").mkdir(exist_ok=True)
    note = tmp_path / "docs" / "note.txt"
    note.write_text(NOTE)
    spec = {
        "name": "doc_letters",
        "run": {"error_threshold": 1.0},
        "sources": [{"name": "docs", "type": "document", "paths": [str(note)]}],
        "steps": [{"name": "fields", "type": "document_fields", "document_types": ["invoice"]}],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "dead"), "format": "jsonl", "redact": redact},
        "governance": {"fields": {"text": "PII"}},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
    }
    summary = run_spec(spec_from_data(spec))
    letters = [
        json.loads(line)
        for f in (tmp_path / "dead").rglob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    return summary, letters


def test_a_document_dead_letter_holds_the_file_not_an_unavailable_marker(tmp_path: Path) -> None:
    summary, (letter,) = _run(tmp_path, redact=False)
    assert letter["rule"] == "document_type" and letter["source"].endswith("note.txt")
    assert base64.b64decode(letter["payloadBytes"]) == NOTE.encode()
    assert not any(a["key"] == "original" for a in letter["attributes"] or [])
    assert summary.node("dead_letters").stats.get("originals_unavailable", 0) == 0


def test_with_redaction_no_document_dead_letter_keeps_unmasked_text(tmp_path: Path) -> None:
    _, (letter,) = _run(tmp_path, redact=True)
    assert letter["payloadBytes"] is None
    assert PII not in json.dumps(letter)
    assert json.loads(letter["payloadString"])["text"] == "[REDACTED]"


def test_a_binary_only_payload_says_why_it_is_gone_when_redacted() -> None:
    """A PDF the source could not read had bytes and no text: redacted, it reads like a DOCX
    or an unknown format's (the marker), not a silent null."""
    letters = pa.table(
        {
            "payloadString": pa.array([None, "PK\x03\x04 not json"], pa.string()),
            "payloadBytes": pa.array([b"%PDF-1.7 ...", b"PK\x03\x04 not json"], pa.binary()),
            "errorMessage": pa.array(["encrypted", "format"], pa.string()),
            "attributes": pa.array(
                [None, None], pa.list_(pa.struct([("key", pa.string()), ("value", pa.string())]))
            ),
        }
    )
    out = redact_table(letters, {"text"})
    assert out.column("payloadString").to_pylist() == [UNPARSEABLE, UNPARSEABLE]
    assert out.column("payloadBytes").null_count == 2
