"""Dataset names by OpenLineage's naming conventions.

Local files: namespace ``file``, name the absolute path. Object stores: namespace
``gs://bucket`` / ``s3://bucket``, name the path inside it. Kafka: namespace
``kafka://{host}:{port}`` of the first bootstrap server, name the topic (:func:`kafka_uri`).
Credentials embedded in a URI (``scheme://user:password@host``) are stripped: lineage must
never carry a secret.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

KAFKA_DEFAULT_PORT = 9092
"""The port librdkafka connects to when a bootstrap server names none."""

_PROTOCOL = re.compile(r"^[A-Za-z][\w+.-]*://")  # librdkafka accepts SASL_SSL://host:port
_PORT = re.compile(r":\d+$")


def strip_credentials(uri: str) -> str:
    """``scheme://user:pass@host/path`` -> ``scheme://host/path``."""
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=host).geturl()
    return uri


def kafka_namespace(bootstrap_servers: str) -> str:
    """``kafka://{host}:{port}`` of the first of ``bootstrap_servers`` (OpenLineage names a
    Kafka cluster by the first bootstrap server, so every producer of lineage for the same
    cluster agrees whichever order or protocol prefix it was configured with)."""
    first = _PROTOCOL.sub("", bootstrap_servers.split(",")[0].strip())
    first = first.rsplit("@", 1)[-1]
    if not _PORT.search(first):
        first = f"{first}:{KAFKA_DEFAULT_PORT}"
    return f"kafka://{first}"


def kafka_uri(bootstrap_servers: str, topic: str) -> str:
    """``kafka://{host}:{port}/{topic}``: what :func:`dataset_name` splits into namespace
    and name (a topic name cannot hold a ``/``)."""
    return f"{kafka_namespace(bootstrap_servers)}/{topic}"


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) for a file, directory, object-store or ``kafka://`` URI."""
    uri = strip_credentials(uri)
    parts = urlsplit(uri)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # len 1: a Windows drive
        path = parts.path if parts.scheme == "file" else uri
        return "file", os.path.abspath(path)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
