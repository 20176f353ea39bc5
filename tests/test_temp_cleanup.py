"""Building a Beam graph that is never run leaves nothing in the temp directory.

``beam.Pipeline()`` makes a ``beam-pipeline-temp*`` directory that Beam removes only inside
``Pipeline.run()``, and the build makes the run's scratch folder: ``validate --deep``,
``plan`` and a run refused before it starts must remove both (pipelines.build.discard_unrun).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.test_cli import write_spec


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The process's temp directory, pointed at an empty folder of the test's."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _left(folder: Path) -> list[str]:
    """What is left in ``folder``: the (empty) base of run scratch folders may stay."""
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    return [name for name in left if name != "beamwright-runs"]


def test_validate_deep_and_plan_leave_no_temp_entries(tmp_path, temp_dir, capsys):
    (tmp_path / "spec").mkdir()
    path = write_spec(tmp_path / "spec")
    assert main(["validate", str(path), "--deep"]) == 0
    assert _left(temp_dir) == []
    assert main(["plan", str(path), "--runner", "flink", "--out", str(tmp_path / "p.json")]) == 0
    assert _left(temp_dir) == []


def test_run_refused_while_building_leaves_no_temp_entries(tmp_path, temp_dir, capsys):
    steps = [{"name": "check", "type": "validate", "expectations": str(tmp_path / "none.json")}]
    (tmp_path / "spec").mkdir()
    path = write_spec(tmp_path / "spec", steps=steps)
    assert main(["run", str(path), "--quiet"]) == 2
    assert "expectations" in capsys.readouterr().err
    assert _left(temp_dir) == []
