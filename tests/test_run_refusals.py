"""``run`` and ``plan`` refuse what ``validate --deep`` finds (a field the data lacks) before
anything runs: path + problem + hint, no lock, no lineage in the current directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main


def _spec(tmp_path: Path) -> Path:
    src = tmp_path / "orders.jsonl"
    src.write_text('{"id": 1, "status": "paid"}\n{"id": 2, "status": "open"}\n')
    spec = {
        "name": "typo",
        "sources": [{"name": "orders", "type": "file", "path": str(src)}],
        "steps": [{"name": "paid", "type": "filter", "where": "stauts == 'paid'"}],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "dead")},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


@pytest.mark.parametrize("command", [["run", "-q"], ["plan", "--runner", "flink"]])
def test_unknown_field_is_refused_before_anything_runs(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    path = _spec(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert main([command[0], str(path), *command[1:]]) == 2
    err = capsys.readouterr().err
    assert "steps[0].where: unknown field 'stauts'" in err and "did you mean 'status'" in err
    assert "Traceback" not in err
    assert list(cwd.iterdir()) == []  # no lineage, no job graph
    assert not (tmp_path / "out").exists() and not (tmp_path / "dead").exists()
