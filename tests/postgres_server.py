"""PostgreSQL for the tests: a session-wide throw-away server (a pytest plugin module).

The server itself is :class:`pipelines.dev.postgres_server.TempPostgres` (``tests/`` is not
installed, and ``beamwright bench --postgres`` needs the same server). ``postgres_server``
starts one per test session on a free 127.0.0.1 port and stops it by PID at the end; when
PostgreSQL's binaries or psycopg are missing, every test using it is skipped, saying what to
install (``make test`` installs Debian's ``postgresql`` package when run as root).

Use it from a test module with ``from tests.postgres_server import postgres_server``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelines.dev.postgres_server import PostgresUnavailable, TempPostgres

__all__ = ["PostgresUnavailable", "TempPostgres", "postgres_server", "start_or_skip"]


def start_or_skip() -> TempPostgres:
    """A started server, or a pytest skip naming what is missing."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: pip install 'beamwright[postgres]'")
    try:
        return TempPostgres().start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL unavailable: {exc}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()
