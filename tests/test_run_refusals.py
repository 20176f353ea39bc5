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
    return _spec_of(tmp_path, str(src), "stauts == 'paid'")


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
    assert not (tmp_path / "out").exists()  # neither outputs nor dead letters


def _spec_of(tmp_path: Path, src: str, where: str) -> Path:
    spec = {
        "name": "later",
        "sources": [{"name": "orders", "type": "file", "path": src}],
        "steps": [{"name": "paid", "type": "filter", "where": where}],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out/orders"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "out/dead")},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_field_first_seen_on_a_later_line_is_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "orders.jsonl"
    src.write_text('{"id": 1}\n{"id": 2, "status": "paid"}\n')
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(_spec_of(tmp_path, str(src), "status == 'paid'")), "-q"]) == 0
    written = [f.read_text() for f in (tmp_path / "out/orders").glob("*.jsonl")]
    assert "".join(written).count('"status":"paid"') == 1


def test_a_run_failing_while_running_leaves_no_lock_and_no_lineage_in_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first file has the field (so the run starts), the second lacks it: the run fails
    at its batch. Its claims made out/orders and out/dead: they are removed again, and the
    lineage goes beside the spec's outputs (out/lineage), not to ./beamwright-output."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in/a.jsonl").write_text('{"id": 1, "status": "paid"}\n')
    (tmp_path / "in/b.jsonl").write_text('{"id": 2, "state": "paid"}\n')
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    path = _spec_of(tmp_path, str(tmp_path / "in/*.jsonl"), "status == 'paid'")
    assert main(["run", str(path), "-q"]) == 1
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["lineage"]
    events = (tmp_path / "out/lineage/events.jsonl").read_text().splitlines()
    assert json.loads(events[-1])["eventType"] == "FAIL"
