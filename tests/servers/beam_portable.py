"""Beam's local job service and an EXTERNAL worker pool, as separate processes on loopback.

This is the portable route without a download: ``local_job_service_main`` (the Job API a
Flink job server also speaks) runs the job stage by stage, and its SDK workers are started by
``worker_pool_main`` in another process, in another working directory, as on a cluster.

Two things Beam does that a test on a shared machine must not: its gRPC servers bind every
interface (``[::]``), and the worker pool starts each worker as ``python`` from ``PATH``
(here pyenv's, without Beam). So each service runs under this module, which rebinds every
gRPC server Beam makes to 127.0.0.1 before handing over to Beam's own ``main``, and the pool
gets a ``PATH`` whose ``python`` is this interpreter.

Run as ``python -m tests.servers.beam_portable job_service|worker_pool PORT``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def _loopback_grpc() -> None:
    """Make every ``grpc.server(...)`` bind 127.0.0.1 where Beam asks for all interfaces."""
    import grpc

    make_server = grpc.server

    def server(*args: Any, **kwargs: Any) -> Any:
        made = make_server(*args, **kwargs)
        add_port = made.add_insecure_port

        def add_insecure_port(address: str) -> int:
            host, _, port = address.rpartition(":")
            if host in ("[::]", "0.0.0.0", "", "localhost"):
                address = f"{LOOPBACK}:{port}"
            return add_port(address)

        made.add_insecure_port = add_insecure_port
        return made

    grpc.server = server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex((LOOPBACK, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def _service(kind: str, workdir: Path, env: dict[str, str]) -> Iterator[int]:
    port = _free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / f"{kind}.log"
    root = Path(__file__).resolve().parents[2]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(root), env.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.beam_portable", kind, str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_listening(port, proc, log)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):  # the pool's workers are in its session
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


@contextlib.contextmanager
def portable_services(workdir: Path) -> Iterator[dict[str, str]]:
    """A job service and an EXTERNAL worker pool, each in its own directory under
    ``workdir``; yields the runner options that send a job to them."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with (
        _service("job_service", workdir / "job_service", env) as job_port,
        _service("worker_pool", workdir / "workers", env) as pool_port,
    ):
        yield {
            "job_endpoint": f"{LOOPBACK}:{job_port}",
            "environment_type": "EXTERNAL",
            "environment_config": f"{LOOPBACK}:{pool_port}",
        }


def main(argv: list[str]) -> None:
    kind, port = argv
    _loopback_grpc()
    if kind == "job_service":
        from apache_beam.runners.portability import local_job_service_main

        local_job_service_main.run(["--port", port])
    elif kind == "worker_pool":
        from apache_beam.runners.worker import worker_pool_main

        worker_pool_main.main(["--service_port", port])
    else:
        raise SystemExit(f"unknown service {kind}")


if __name__ == "__main__":
    main(sys.argv[1:])
