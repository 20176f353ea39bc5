"""A throw-away PostgreSQL server for tests and ``beamwright bench --postgres``.

Debian's binaries (package ``postgresql``: ``/usr/lib/postgresql/<version>/bin``) make a
cluster with ``initdb`` in a temporary directory, and :class:`TempPostgres` runs its
``postgres`` on a free port of 127.0.0.1 (``listen_addresses='127.0.0.1'``, the Unix socket in
that directory too, so nothing outside it is touched). ``postgres`` is started directly as our
child, not through ``pg_ctl start``: ``pg_ctl`` daemonizes the postmaster, which then belongs to
nobody and, if this process dies, is left running; as our child it is reaped, and ``stop``
kills the PID written in ``postmaster.pid`` (fast shutdown, then SIGKILL) whatever happened.

PostgreSQL refuses to run as root. As root the cluster is made and run as the ``postgres``
user Debian's package creates (else ``nobody``), through ``subprocess``'s ``user=``/``group=``;
a developer's own account runs it as itself.

TCP connections need a password (scram-sha-256), so tests exercise the password path a real
server has; the superuser's password is random and held by the object only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from connectors.errors import BeamwrightError

_READY_TIMEOUT_S = 30.0
_STOP_TIMEOUT_S = 15.0


class PostgresUnavailable(BeamwrightError, RuntimeError):
    """PostgreSQL's server binaries are not installed (or cannot run here)."""


class PostgresStartFailed(BeamwrightError, RuntimeError):
    """PostgreSQL is installed but the server did not start (its log says why): a failure,
    never a reason to skip what needs it."""


def server_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``postgres``: Debian's newest version first, then
    ``pg_config --bindir``, then ``initdb`` on PATH.

    Raises:
        PostgresUnavailable: none found (install Debian's ``postgresql`` package).
    """
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(done.stdout.strip())
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(os.path.realpath(initdb)).parent))
    for folder in candidates:
        if all(os.access(Path(folder) / b, os.X_OK) for b in ("initdb", "postgres")):
            return Path(folder)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) are not installed",
        hint="apt-get install postgresql (make test does it when run as root)",
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run the server as when we are root, else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return entry.pw_uid, entry.pw_gid
    raise PostgresUnavailable("running as root and there is no 'postgres' or 'nobody' user")


class TempPostgres:
    """A PostgreSQL cluster in a temporary directory, served on 127.0.0.1.

    Use as a context manager, or ``start()``/``stop()``. ``stop`` removes the directory.

    Attributes:
        host, port, user, password, dbname: how to connect (``password`` over TCP).
    """

    def __init__(self, port: int | None = None) -> None:
        self.bin = server_bin_dir()
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.user = "postgres"
        self.dbname = "postgres"
        self.password = secrets.token_urlsafe(16)
        self.dir: Path | None = None
        self._process: subprocess.Popen | None = None
        self._owner = _run_as()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> TempPostgres:
        """initdb (first start only) and run the server; raises with its log if it fails.
        A port taken between :func:`free_port` and the server's bind (another process on a
        shared machine) is retried on a new port, unless the port was asked for."""
        for attempt in range(3):
            try:
                return self._start()
            except PostgresStartFailed as exc:
                if "already in use" not in str(exc) or self._fixed_port or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> TempPostgres:
        if self.dir is None:
            self._initdb()
        assert self.dir is not None
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server's stdout
        try:
            self._process = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.dir / "data"),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    f"unix_socket_directories={self.dir}",
                    "-c",
                    "fsync=off",  # a throw-away cluster: durability costs time for nothing
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the server
                **self._as_owner(),
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except Exception as exc:
            text = self.log_text()
            self.stop(remove=False)
            raise PostgresStartFailed(
                f"postgres did not start on {self.host}:{self.port}: {exc}\n{text[-3000:]}"
            ) from None
        return self

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server by its postmaster's PID (fast shutdown, SIGKILL after a timeout)
        and, with ``remove``, delete the cluster's directory."""
        process, self._process = self._process, None
        pid = self.postmaster_pid() or (process.pid if process is not None else None)
        if pid is not None:
            _terminate(pid, process)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=_STOP_TIMEOUT_S)
        if remove and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def restart(self) -> None:
        """Stop the server (keeping its data) and start it again on the same port."""
        self.stop(remove=False)
        self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def postmaster_pid(self) -> int | None:
        """The PID in ``postmaster.pid`` (the server's first line), or None."""
        if self.dir is None:
            return None
        try:
            first = (self.dir / "data" / "postmaster.pid").read_text().splitlines()[0]
            return int(first)
        except (OSError, IndexError, ValueError):
            return None

    def log_text(self) -> str:
        if self.dir is None:
            return ""
        try:
            return (self.dir / "server.log").read_text(errors="replace")
        except OSError:
            return ""

    # -- use ---------------------------------------------------------------------------
    def connection_spec(self, password_env: str) -> dict[str, Any]:
        """The ``connection`` of a ``postgres`` step for this server, its password read from
        the environment variable ``password_env`` (a reference: never the value)."""
        return {
            "host": self.host,
            "port": self.port,
            "database": self.dbname,
            "user": self.user,
            "password": {"env": password_env},
        }

    def connect(self, **kwargs: Any) -> Any:
        """A psycopg connection as the superuser over TCP (autocommit)."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=kwargs.pop("dbname", self.dbname),
            autocommit=True,
            **kwargs,
        )

    def execute(self, sql: str, params: Any = None) -> None:
        """Run one statement as the superuser."""
        with self.connect() as conn:
            conn.execute(sql, params)

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------
    def _as_owner(self) -> dict[str, Any]:
        if self._owner is None:
            return {}
        uid, gid = self._owner
        return {"user": uid, "group": gid, "extra_groups": []}

    def _initdb(self) -> None:
        base = "/tmp" if self._owner is not None and os.path.isdir("/tmp") else None
        folder = Path(tempfile.mkdtemp(prefix="bw-pg-", dir=base))
        pwfile = folder / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self._owner is not None:
            os.chown(folder, *self._owner)
            os.chown(pwfile, *self._owner)
        done = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(folder / "data"),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=folder,
            **self._as_owner(),
        )
        pwfile.unlink()
        if done.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            raise PostgresStartFailed(f"initdb failed: {done.stderr.strip() or done.stdout}")
        self.dir = folder

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError("postgres exited")
            try:
                with self.connect(connect_timeout=2):
                    return
            except Exception as exc:  # noqa: BLE001 - not up yet: try again until the deadline
                last = exc
                time.sleep(0.05)
        raise TimeoutError(f"not ready after {_READY_TIMEOUT_S:.0f} s: {last}")


def _terminate(pid: int, process: subprocess.Popen | None) -> None:
    """SIGINT (PostgreSQL's fast shutdown: ends every backend) then SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.pid == pid:
            if process.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return state != "Z"
