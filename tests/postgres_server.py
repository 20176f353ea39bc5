"""PostgreSQL for the tests: a session-wide throw-away server (a pytest plugin module).

The server itself is :class:`pipelines.dev.postgres_server.TempPostgres` (``tests/`` is not
installed, and ``beamwright bench --postgres`` needs the same server). ``postgres_server``
starts one per test session on a free 127.0.0.1 port and stops it by PID at the end; when
PostgreSQL's binaries or psycopg are missing, every test using it is skipped, saying what to
install (``make test`` installs Debian's ``postgresql`` package when run as root).

Use it from a test module with ``from tests.postgres_server import postgres_server``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import pytest

from connectors.postgres import close_pools
from pipelines.dev.postgres_server import PostgresUnavailable, TempPostgres

__all__ = [
    "PostgresUnavailable",
    "TempPostgres",
    "create_scratch_table",
    "password_in_env",
    "postgres_server",
    "start_or_skip",
]


def start_or_skip() -> TempPostgres:
    """A started server, or a pytest skip naming what is missing. Only a missing install is
    skipped, and never under CI (``make test`` installs both there): a server that is
    installed but does not start fails the tests, with its log."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _skip_unless_ci("psycopg is not installed: pip install 'beamwright[postgres]'")
    try:
        return TempPostgres().start()
    except PostgresUnavailable as exc:
        _skip_unless_ci(f"PostgreSQL unavailable: {exc}")
        raise


def _skip_unless_ci(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI installs it: make test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[TempPostgres]:
    server = start_or_skip()
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def password_in_env(server: TempPostgres, env: str) -> Iterator[TempPostgres]:
    """The server with its password in the environment variable ``env`` (where a test's specs
    name it as an env secret); afterwards the connection pools are closed and ``env`` removed,
    so that the next module starts with neither."""
    os.environ[env] = server.password
    yield server
    close_pools()
    os.environ.pop(env, None)


def create_scratch_table(server: TempPostgres, prefix: str, columns: str) -> str:
    """Create a table named ``prefix`` plus a random suffix (``schema.name`` works), with the
    SQL column list ``columns``, and return its name: one fresh table per test, so that
    tests never see each other's rows."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    server.execute(f"CREATE TABLE {name} ({columns})")
    return name
