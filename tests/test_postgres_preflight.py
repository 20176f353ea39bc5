"""An unreachable PostgreSQL fails ``run`` at its start in seconds with one line (path +
problem + hint), and a pool's reconnect warnings are one line per pool, not one per attempt."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path

import pytest

from connectors.postgres import _FirstPoolError
from pipelines.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_database_fails_the_run_at_once_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_text('{"id": 1}\n')
    port = _closed_port()
    spec = {
        "name": "pg_down",
        "sources": [{"name": "rows", "type": "file", "path": str(src)}],
        "steps": [
            {
                "name": "enrich",
                "type": "postgres",
                "connection": {"host": "127.0.0.1", "port": port, "database": "db", "user": "u"},
                "table": "public.people",
                "on": "id",
            }
        ],
        "sinks": [
            {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
        ],
        "dead_letter": {"path": str(tmp_path / "dead")},
        "lineage": {"event_log": str(tmp_path / "events.jsonl")},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        code = main(["run", str(path), "-q"])
    assert code == 1 and time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert f"steps[0].connection: cannot connect to PostgreSQL at 127.0.0.1:{port}/db" in err
    assert "nothing has run" in err and "Traceback" not in err
    assert "psycopg.pool" not in caplog.text and "error connecting" not in caplog.text
    assert not (tmp_path / "out").exists() and not (tmp_path / "events.jsonl").exists()


def test_a_pool_says_once_that_it_cannot_connect() -> None:
    keep = _FirstPoolError()

    def record(pool: str, msg: str = "error connecting in %r: %s") -> logging.LogRecord:
        return logging.LogRecord("psycopg.pool", logging.WARNING, "", 0, msg, (pool, "x"), None)

    assert keep.filter(record("a")) and not keep.filter(record("a"))
    assert keep.filter(record("b"))  # another pool: its first warning shows
    assert keep.filter(record("a", "reconnection attempt in pool %r failed after %s sec"))
