"""Suite-wide fixtures: every OpenLineage event emitted in this test process is captured and,
at the end of the session, validated against the official schemas (facet by facet)."""

from __future__ import annotations

import pytest

from tests import openlineage_schema

pytest_plugins = ["tests.secret_fixtures", "tests.kafka_fixtures"]

CAPTURED: list[dict] = []


@pytest.fixture(scope="session", autouse=True)
def capture_lineage_events():
    from lineage.emitter import EVENT_OBSERVERS

    EVENT_OBSERVERS.append(CAPTURED.append)
    yield CAPTURED
    EVENT_OBSERVERS.remove(CAPTURED.append)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not CAPTURED or not openlineage_schema.available():
        return
    problems = [p for event in CAPTURED for p in openlineage_schema.event_problems(event)]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if problems:
        if reporter:
            reporter.write_line(
                f"{len(problems)} OpenLineage schema violation(s) in captured events:", red=True
            )
            for p in problems[:50]:
                reporter.write_line(f"  {p}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif reporter:
        reporter.write_line(
            f"{len(CAPTURED)} OpenLineage events captured in this session: all valid against the spec"
        )
