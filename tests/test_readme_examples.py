"""Every spec example in README.md loads, passes ``validate``, and runs on the shipped sample
data. A README example that breaks (issue 8, item 16: ``on:`` read as ``True``) fails here."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.loading import load_spec, parse_yaml
from pipelines.run import RunFailed, run_spec
from templates.base import SAMPLE_DATA

README = Path(__file__).resolve().parents[1] / "README.md"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPEC_KEYS = {"name", "sources", "sinks", "dead_letter"}


def spec_examples() -> list[str]:
    """The fenced YAML blocks of the README that are whole specs (not fragments), as text."""
    blocks = YAML_BLOCK.findall(README.read_text())
    return [b for b in blocks if isinstance(data := parse_yaml(b), dict) and set(data) >= SPEC_KEYS]


def test_the_readme_has_spec_examples():
    assert spec_examples(), "README.md lost its spec examples (or this test's extraction broke)"


@pytest.mark.parametrize("text", spec_examples(), ids=lambda t: parse_yaml(t)["name"])
def test_readme_spec_passes_deep_validation(text, tmp_path, monkeypatch, capsys):
    _sample_workspace(tmp_path, monkeypatch)
    (tmp_path / "example.yaml").write_text(text)
    code = main(["validate", "example.yaml", "--deep"])
    assert code == 0, capsys.readouterr().err


def _sample_workspace(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files the README's first example names, made from the shipped sample data."""
    (folder / "data").mkdir()
    shutil.copy(SAMPLE_DATA / "orders_2026_01.jsonl", folder / "data/orders-01.jsonl")
    shutil.copy(SAMPLE_DATA / "customers.csv", folder / "data/customers.csv")
    (folder / "schemas").mkdir()
    fields = [
        {"name": name, "type": ["null", "string"]}
        for name in ("order_id", "email", "status", "country", "customer_id", "card_number")
    ]
    (folder / "schemas/order.avsc").write_text(
        json.dumps({"type": "record", "name": "Order", "fields": fields})
    )
    (folder / "gx").mkdir()
    suite = {
        "name": "orders_suite",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "order_id"}}
        ],
    }
    (folder / "gx/orders_suite.json").write_text(json.dumps(suite))
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PSEUDONYM_KEY", "a-test-key-that-is-long-enough-0123456789")
    monkeypatch.setenv("KAFKA_PASSWORD", "not-a-real-password")  # the Kafka example names it


@pytest.mark.parametrize("text", spec_examples(), ids=lambda t: parse_yaml(t)["name"])
def test_readme_spec_runs_on_sample_data(text, tmp_path, monkeypatch):
    if any(source["type"] != "file" for source in parse_yaml(text)["sources"]):
        pytest.skip("needs a Kafka broker; validated above")
    _sample_workspace(tmp_path, monkeypatch)
    (tmp_path / "example.yaml").write_text(text)
    spec = load_spec("example.yaml")
    try:
        summary = run_spec(spec)
    except RunFailed as exc:  # the sample data holds bad rows on purpose: the threshold may trip
        summary = exc.summary
        assert "threshold" in (summary.error or ""), summary.error
    assert summary.rows_read > 0
    assert summary.reconciled
    for sink in spec.sinks:
        assert summary.node(sink.name).rows_out > 0, sink.name
