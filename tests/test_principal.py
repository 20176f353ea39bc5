"""Who ran a run (issue 17): ``--as`` > BEAMWRIGHT_PRINCIPAL > the CI system's user > the OS
user, recorded as the ``beamwright_principal`` run facet of every event."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path

import pytest

from pipelines.principal import CI_SYSTEMS, Principal, resolve
from tests import openlineage_schema

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "audiences"
GITHUB = {"GITHUB_ACTIONS": "true", "GITHUB_ACTOR": "octocat"}


def test_as_wins_over_everything():
    env = {"BEAMWRIGHT_PRINCIPAL": "svc", **GITHUB}
    assert resolve("alice", env) == Principal("alice", "user", "--as")
    assert resolve("service:nightly-etl", env) == Principal("nightly-etl", "service", "--as")


def test_the_environment_variable_wins_over_ci_and_os():
    env = {"BEAMWRIGHT_PRINCIPAL": "service:scheduler", **GITHUB}
    assert resolve(None, env) == Principal("scheduler", "service", "env:BEAMWRIGHT_PRINCIPAL")
    assert resolve(None, {"BEAMWRIGHT_PRINCIPAL": "bob"}).type == "user"


@pytest.mark.parametrize(("system", "marker", "user"), CI_SYSTEMS)
def test_each_ci_system_names_its_user(system, marker, user):
    assert resolve(None, {marker: "true", user: "ci-user"}) == Principal(
        "ci-user", "ci", f"ci:{system}"
    )


def test_a_ci_marker_without_its_user_falls_through_to_the_os_user():
    assert resolve(None, {"GITHUB_ACTIONS": "true"}) == Principal(getpass.getuser(), "user", "os")
    assert resolve(None, {"GITHUB_ACTOR": "octocat"}).source == "os"  # not on GitHub Actions


def test_the_os_user_last():
    assert resolve(None, {}) == Principal(getpass.getuser(), "user", "os")


@pytest.mark.slow
def test_run_as_is_the_principal_of_every_event(tmp_path, monkeypatch):
    from pipelines.cli import main
    from tests.conftest import CAPTURED

    shutil.copytree(EXAMPLE, tmp_path / "example")
    monkeypatch.chdir(tmp_path / "example")
    monkeypatch.setenv("BEAMWRIGHT_PRINCIPAL", "someone-else")
    first = len(CAPTURED)
    assert main(["run", "spec.yaml", "--quiet", "--as", "service:nightly"]) == 0
    events = CAPTURED[first:]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    for event in events:
        facet = event["run"]["facets"]["beamwright_principal"]
        assert {k: facet[k] for k in ("name", "type", "source")} == {
            "name": "nightly",
            "type": "service",
            "source": "--as",
        }
        assert not openlineage_schema.event_problems(event)
