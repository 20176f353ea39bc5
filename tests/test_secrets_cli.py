"""``beamwright secrets ...``: the commands, their output, and a fast start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.secrets.registry import open_store
from pipelines.secrets_cli import main

HEAVY = (
    "apache_beam",
    "pyarrow",
    "grpc",
    "google",
    "boto3",
    "botocore",
    "hvac",
    "azure",
    "croniter",
    "yaml",
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_module_imports_only_the_standard_library() -> None:
    code = (
        # modules present before the import are the interpreter's (a namespace package's
        # .pth file, as google-cloud's, puts an empty 'google' there at start-up)
        "import sys; before = set(sys.modules);"
        "import pipelines.secrets_cli as cli, argparse;"
        "p = argparse.ArgumentParser(); cli.add_parser(p.add_subparsers());"
        f"print([m for m in set(sys.modules) - before if m.split('.')[0] in {HEAVY!r}])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_lifecycle_start_status_rotate_audit_run_stop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    base = ["secrets", "--home", home, "--actor", "alice@test"]
    code, out, _ = run(
        capsys,
        *base,
        "start",
        "db-password",
        "--refresh-interval",
        "1s",
        "--longest-bundle",
        "1s",
        "--schedule",
        "0 3 * * *",
    )
    assert code == 0
    assert "overlap 3s" in out and "db-password: rotated (initial) version 1" in out

    code, out, _ = run(capsys, *base, "rotate", "db-password", "--reason", "quarterly")
    assert code == 0 and "rotated (manual) version 2, previous 1" in out

    code, out, _ = run(capsys, *base, "status", "db-password")
    assert code == 0
    assert "db-password  active  store=file" in out
    assert "current   version 2 (enabled)" in out and "previous  version 1 (enabled)" in out
    assert "disabling version 1 at" in out and "next run " in out

    code, out, _ = run(capsys, *base, "status", "--json")
    status = json.loads(out)[0]
    assert status["current"]["version"] == "2" and status["retiring"].keys() == {"1"}

    time.sleep(3.1)
    code, out, _ = run(capsys, *base, "run", "--once")
    assert code == 0
    code, out, _ = run(capsys, *base, "status", "db-password", "--json")
    assert json.loads(out)[0]["previous"] is None

    code, out, _ = run(capsys, *base, "audit", "db-password", "--json")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions[0] == "start" and "promote" in actions and actions[-1] == "disable_previous"
    assert all(json.loads(line)["actor"] == "alice@test" for line in out.splitlines())
    code, out, _ = run(capsys, *base, "audit", "--limit", "1")
    assert out.count("\n") == 1 and "disable_previous  ok  v1" in out

    code, out, _ = run(capsys, *base, "stop", "db-password")
    assert code == 0 and "stopped" in out
    code, out, _ = run(capsys, *base, "status")
    assert "db-password  stopped" in out

    store = open_store({"type": "file", "path": f"{home}/store"})
    value = store.access("db-password").secret.reveal().decode()
    everything = "".join(
        p.read_text() for p in Path(home).rglob("*.json*") if "store" not in p.parts
    )
    assert value not in everything


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["secrets", "--home", str(tmp_path)]
    code, _, err = run(capsys, *base, "start", "k", "--refresh-interval", "60s", "--overlap", "1m")
    assert code == 2 and "shorter than 2 x refresh_interval + longest_bundle = 180s" in err
    code, _, err = run(capsys, *base, "rotate", "unknown")
    assert code == 2 and "no rotation policy for secret 'unknown'" in err
    code, _, err = run(capsys, *base, "start", "k", "--store", "{not json")
    assert code == 2 and "--store: expected JSON" in err


def test_policy_file_and_failed_rotation_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "refresh_interval: 1s\nlongest_bundle: 1s\n"
        "verifier: {type: http, url: 'http://127.0.0.1:9/health', timeout: 1}\n"
    )
    code, out, _ = run(
        capsys, "secrets", "--home", str(tmp_path / "h"), "start", "svc", "--policy", str(policy)
    )
    assert code == 1 and "svc: rolled_back (initial)" in out and "unreachable" in out


def test_runs_as_a_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.secrets_cli",
            "secrets",
            "--home",
            str(tmp_path),
            "status",
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0 and "no rotation policies" in done.stdout
