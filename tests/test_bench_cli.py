"""``beamwright bench`` as a user meets it: its help, its argument checks, the Nexmark bench's
verdict and exit code, and its work directories (removed unless asked for or failed)."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.dev.bench_cases import CASES
from pipelines.dev.nexmark_bench import _timed, failure, print_text, query_numbers
from pipelines.dev.workdir import BenchWorkdir


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_bench_help_lists_every_case_and_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    for case in CASES:
        assert case in " ".join(out.split())
    for option in ("--rows", "--batch-size", "--nexmark-events", "--kafka-messages", "--http-rows"):
        described = re.search(rf"\n  {option} [A-Z_]+\s+(.*?)(?=\n  -|\Z)", out, re.S)
        assert described and "(default: " in described.group(1), option


def test_nexmark_arguments_are_checked_before_anything_runs(capsys):
    err = _usage_error(["bench", "--nexmark", "--nexmark-queries", "q1,13"], capsys)
    assert "no Nexmark query '13'" in err and "0-12" in err
    err = _usage_error(["bench", "--nexmark", "--nexmark-events", "0"], capsys)
    assert "0 events is too few: at least 1,000" in err
    assert query_numbers("q1, 3") == [1, 3]


def test_a_side_that_crashes_or_reports_nothing_is_a_failure():
    crashed = _timed([sys.executable, "-c", "raise SystemExit('boom')"], lambda out: 0.0)
    assert "boom" in crashed["error"]
    silent = _timed([sys.executable, "-c", "pass"], lambda out: float(out.split()[-1]))
    assert "report is missing" in silent["error"]
    assert "boom" in failure({"query": 1, "spec": {}, "beam": crashed})
    assert "boom" in failure({"query": 12, "spec": crashed, "beam": {"error": "unrunnable"}})
    assert failure({"query": 12, "spec": {}, "beam": {"error": "Beam cannot run it"}}) is None
    assert failure({"query": 1, "spec": {}, "beam": {}, "equal": None}) == "the results differ"
    assert failure({"query": 1, "spec": {}, "beam": {}, "equal": True}) is None


def test_nexmark_text_report_shows_cpu_rates_and_whole_notes(capsys):
    side = {"seconds": 2.0, "run_seconds": 1.0, "cpu_seconds": 1.5}
    side |= {"events_per_second": 500, "events_per_cpu_second": 667}
    note = "Beam cannot run query 12 on a bounded file: " + "a long explanation " * 10 + "END"
    print_text(
        {
            "queries": [{"query": 12, "spec": side, "beam": {"error": note}}],
            "environment": {"load_average": [1.0, 1.0, 1.0]},
            "load_average_after": [1.0, 1.0, 1.0],
        }
    )
    out = capsys.readouterr().out
    assert "1.5 CPU-s" in out and "500 events/s" in out and "667 events/CPU-s" in out
    assert "END" in out


def test_bench_workdir_removed_unless_given_or_failed(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with BenchWorkdir(None, "bench-") as work:
        (work.path / "data").write_text("x")
    assert not work.path.exists()
    with BenchWorkdir(None, "bench-") as work:
        work.failed = True
    assert work.path.exists() and str(work.path) in capsys.readouterr().err
    with pytest.raises(RuntimeError), BenchWorkdir(None, "bench-") as crashed:
        raise RuntimeError("a case crashed")
    assert crashed.path.exists() and str(crashed.path) in capsys.readouterr().err
    given = tmp_path / "mine"
    with BenchWorkdir(str(given), "bench-"):
        pass
    assert given.exists() and str(given) in capsys.readouterr().err


def test_bench_with_unknown_cases_leaves_no_workdir(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    err = _usage_error(["bench", "--cases", "parquet,nope"], capsys)
    assert "unknown case 'nope'" in err and "plain_masks" in err
    assert list(Path(tmp_path).iterdir()) == []
