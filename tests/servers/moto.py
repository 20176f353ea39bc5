"""moto's AWS server on 127.0.0.1."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.servers.http import LOOPBACK


@contextlib.contextmanager
def moto_endpoint() -> Iterator[str]:
    """moto's server on loopback; boto3 needs fake credentials in the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
