"""A small Confluent Schema Registry client: schema lookup by id (cached), the latest schema
of a subject (for lineage), and registration.

Confluent's wire format puts a magic byte ``0`` and a 4-byte big-endian schema id before each
Avro payload. Readers look the id up once per process (``GET /schemas/ids/{id}``); ids are
immutable in a registry, so a found schema is cached forever. An id the registry does not know
(HTTP 404) is an undecodable *message*, not a broken pipeline: the caller dead-letters it, and
the answer is cached for ``negative_ttl_s`` so a flood of such messages costs one request.
Anything else (connection refused, 5xx, a reply that is not a schema) is retried with backoff
and then raised, failing the bundle: an unreachable registry must not turn every message into
a dead letter.

Only the standard library is used (``urllib``), so the worker needs no extra dependency.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from connectors.errors import BeamwrightError, RunError
from connectors.secrets import Secret, SecretRef

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryError(RunError, RuntimeError):
    """The registry could not be asked (unreachable, error status, malformed reply)."""


class UnknownSchemaError(RunError, LookupError):
    """The registry has no schema with this id."""


class UnsupportedSchemaError(BeamwrightError, ValueError):
    """The registry's schema for this id is not an Avro schema."""


class SchemaRegistry:
    """Looks schemas up by id and registers them, with an in-process cache.

    Args:
        url: the registry's base URL, e.g. ``http://127.0.0.1:8081``.
        auth: ``user:password`` for HTTP basic authentication, as a resolved Secret.
        timeout_s: per request.
        retries: extra attempts for failures that are not a definite answer.
        negative_ttl_s: how long an "unknown id" answer is remembered.
    """

    def __init__(
        self,
        url: str,
        *,
        auth: Secret | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        negative_ttl_s: float = 60.0,
    ) -> None:
        self._url = url.rstrip("/")
        self._auth = auth
        self._timeout_s = timeout_s
        self._retries = retries
        self._negative_ttl_s = negative_ttl_s
        self._schemas: dict[int, dict] = {}
        self._unknown: dict[int, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, url: str, auth: SecretRef | None = None) -> SchemaRegistry:
        """A client for ``url``, resolving the ``user:password`` reference ``auth`` now (on the
        worker that calls it)."""
        return cls(url, auth=None if auth is None else auth.resolve())

    def schema(self, schema_id: int) -> dict:
        """The Avro schema registered under ``schema_id`` (parsed JSON).

        Raises:
            UnknownSchemaError: the registry has no such id.
            UnsupportedSchemaError: the id holds a JSON Schema or Protobuf schema.
            SchemaRegistryError: the registry could not be asked.
        """
        with self._lock:
            cached = self._schemas.get(schema_id)
            if cached is not None:
                return cached
            unknown_until = self._unknown.get(schema_id)
            if unknown_until is not None and time.monotonic() < unknown_until:
                raise UnknownSchemaError(f"schema id {schema_id} is not in the registry")
        try:
            reply = self._request("GET", f"/schemas/ids/{schema_id}")
        except UnknownSchemaError:
            with self._lock:
                self._unknown[schema_id] = time.monotonic() + self._negative_ttl_s
            raise UnknownSchemaError(f"schema id {schema_id} is not in the registry") from None
        schema = _avro_schema(reply, schema_id)
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def latest(self, subject: str) -> dict:
        """The Avro schema of the latest version registered under ``subject`` (parsed JSON).

        Not cached: a subject's latest version changes whenever a schema is registered.

        Raises:
            UnknownSchemaError: the registry has no such subject.
            UnsupportedSchemaError: the latest version is a JSON Schema or Protobuf schema.
            SchemaRegistryError: the registry could not be asked.
        """
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions/latest"
        try:
            reply = self._request("GET", path)
        except UnknownSchemaError:
            raise UnknownSchemaError(f"subject {subject!r} is not in the registry") from None
        schema_id = reply.get("id") if isinstance(reply, dict) else None
        return _avro_schema(reply, schema_id)

    def register(self, subject: str, schema: dict) -> int:
        """Register ``schema`` under ``subject`` (idempotent in the registry); its id."""
        body = {"schema": json.dumps(schema, separators=(",", ":"))}
        path = f"/subjects/{urllib.parse.quote(subject, safe='')}/versions"
        reply = self._request("POST", path, body)
        schema_id = reply.get("id") if isinstance(reply, dict) else None
        if not isinstance(schema_id, int):
            raise SchemaRegistryError(f"registering under {subject!r}: reply has no id: {reply!r}")
        with self._lock:
            self._schemas[schema_id] = schema
        return schema_id

    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        delay = 0.2
        for attempt in range(self._retries + 1):
            try:
                return self._send(method, path, body)
            except SchemaRegistryError:
                if attempt == self._retries:
                    raise
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(self, method: str, path: str, body: dict | None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self._url + path, data=data, method=method)
        request.add_header("Accept", _CONTENT_TYPE)
        if data is not None:
            request.add_header("Content-Type", _CONTENT_TYPE)
        if self._auth is not None:
            token = base64.b64encode(self._auth.reveal()).decode("ascii")
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and method == "GET":
                raise UnknownSchemaError(path) from None
            raise SchemaRegistryError(f"schema registry {method} {path}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise SchemaRegistryError(f"schema registry {method} {path}: {exc}") from None
        try:
            return json.loads(payload)
        except ValueError:
            raise SchemaRegistryError(
                f"schema registry {method} {path}: reply is not JSON"
            ) from None


def _avro_schema(reply: Any, schema_id: int | None) -> dict:
    if not isinstance(reply, dict) or not isinstance(reply.get("schema"), str):
        raise SchemaRegistryError(f"schema id {schema_id}: reply has no schema: {reply!r}")
    kind = reply.get("schemaType", "AVRO")
    if kind != "AVRO":
        raise UnsupportedSchemaError(f"schema id {schema_id} is a {kind} schema, not Avro")
    try:
        schema = json.loads(reply["schema"])
    except ValueError:
        raise SchemaRegistryError(f"schema id {schema_id}: the schema is not JSON") from None
    if isinstance(schema, str):  # a primitive schema such as "string"
        schema = {"type": schema}
    return schema
