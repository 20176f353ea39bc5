"""Dataset names by OpenLineage's naming conventions.

Local files: namespace ``file``, name the absolute path. Object stores: namespace
``gs://bucket`` / ``s3://bucket``, name the path inside it. Credentials embedded in a URI
(``scheme://user:password@host``) are stripped: lineage must never carry a secret.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def strip_credentials(uri: str) -> str:
    """``scheme://user:pass@host/path`` -> ``scheme://host/path``."""
    parts = urlsplit(uri)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc=host).geturl()
    return uri


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) for a file, directory or object-store URI."""
    uri = strip_credentials(uri)
    parts = urlsplit(uri)
    if parts.scheme in ("", "file") or len(parts.scheme) == 1:  # len 1: a Windows drive
        path = parts.path if parts.scheme == "file" else uri
        return "file", os.path.abspath(path)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
