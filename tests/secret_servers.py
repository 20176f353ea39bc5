"""Real servers on 127.0.0.1 for the credential-service tests.

* :class:`FakeSecretManager`: a gRPC server speaking Secret Manager's wire protocol, built on
  the client library's own request/response types, so the real client talks to it unchanged.
* :class:`VaultServer`: the KV v2 HTTP endpoints hvac uses.
* :func:`moto_endpoint`: moto's AWS server (ThreadedMotoServer).
* :class:`SmtpSink` (aiosmtpd), :class:`WebhookReceiver` (checks the HMAC signature).
* :class:`ProtectedApi`: the system a credential protects. It accepts only tokens it minted and
  has not revoked, so a consumer using a disabled credential fails for real.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from google.cloud.secretmanager_v1 import types

from connectors.secrets import Secret
from connectors.secrets.gcp import crc32c
from connectors.secrets.notify import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    verify_signature,
)
from pipelines.dev.kafka_broker import free_port

LOOPBACK = "127.0.0.1"


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ============================================================================ Secret Manager


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class FakeSecretManager:
    """Secret Manager over gRPC: secrets, numbered versions, aliases, annotations, etags,
    enable/disable/destroy. ``calls`` counts RPCs by method; ``stop``/``start`` take the server
    down and bring it back on the same port with its data: a real outage for the client."""

    SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.calls: Counter[str] = Counter()
        self.port = 0
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> FakeSecretManager:
        methods = {
            "CreateSecret": (types.CreateSecretRequest, types.Secret, self._create_secret),
            "GetSecret": (types.GetSecretRequest, types.Secret, self._get_secret),
            "UpdateSecret": (types.UpdateSecretRequest, types.Secret, self._update_secret),
            "AddSecretVersion": (
                types.AddSecretVersionRequest,
                types.SecretVersion,
                self._add_version,
            ),
            "AccessSecretVersion": (
                types.AccessSecretVersionRequest,
                types.AccessSecretVersionResponse,
                self._access,
            ),
            "GetSecretVersion": (
                types.GetSecretVersionRequest,
                types.SecretVersion,
                self._get_version,
            ),
            "ListSecretVersions": (
                types.ListSecretVersionsRequest,
                types.ListSecretVersionsResponse,
                self._list_versions,
            ),
            "DisableSecretVersion": (
                types.DisableSecretVersionRequest,
                types.SecretVersion,
                lambda r: self._set_state(r, types.SecretVersion.State.DISABLED),
            ),
            "EnableSecretVersion": (
                types.EnableSecretVersionRequest,
                types.SecretVersion,
                lambda r: self._set_state(r, types.SecretVersion.State.ENABLED),
            ),
            "DestroySecretVersion": (
                types.DestroySecretVersionRequest,
                types.SecretVersion,
                lambda r: self._set_state(r, types.SecretVersion.State.DESTROYED),
            ),
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._wrap(name, handler),
                request_deserializer=request.deserialize,
                response_serializer=response.serialize,
            )
            for name, (request, response, handler) in methods.items()
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(self.SERVICE, handlers)]
        )
        self.port = server.add_insecure_port(f"{LOOPBACK}:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def _wrap(
        self, name: str, handler: Callable[[Any], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            self.calls[name] += 1
            with self._lock:
                try:
                    return handler(request)
                except _Abort as exc:
                    context.abort(exc.code, str(exc))

        return call

    # ---------------------------------------------------------------- model

    def _secret(self, path: str) -> dict[str, Any]:
        if path not in self.secrets:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"Secret [{path}] not found")
        return self.secrets[path]

    def _resource(self, entry: dict[str, Any]) -> types.Secret:
        secret = types.Secret(
            name=entry["name"],
            replication=types.Replication(automatic=types.Replication.Automatic()),
            create_time=entry["created"],
            etag=f'"{entry["etag"]}"',
            version_aliases=dict(entry["aliases"]),
            annotations=dict(entry["annotations"]),
        )
        if entry["expire_time"] is not None:
            secret.expire_time = entry["expire_time"]
        if entry.get("topics"):
            secret.topics = [types.Topic(name=t) for t in entry["topics"]]
        if entry.get("rotation") is not None:
            secret.rotation = entry["rotation"]
        return secret

    @staticmethod
    def _version_resource(path: str, version: dict[str, Any]) -> types.SecretVersion:
        return types.SecretVersion(
            name=path,
            create_time=version["created"],
            state=version["state"],
            client_specified_payload_checksum=version["crc"],
        )

    def _version(self, path: str) -> tuple[dict[str, Any], str, int]:
        secret_path, _, ref = path.rpartition("/versions/")
        entry = self._secret(secret_path)
        if ref == "latest":
            enabled = [
                n
                for n, v in entry["versions"].items()
                if v["state"] == types.SecretVersion.State.ENABLED
            ]
            if not enabled:
                raise _Abort(grpc.StatusCode.NOT_FOUND, "no enabled version")
            number = max(enabled)
        elif ref.isdigit():
            number = int(ref)
        elif ref in entry["aliases"]:
            number = entry["aliases"][ref]
        else:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"SecretVersion [{path}] not found")
        if number not in entry["versions"]:
            raise _Abort(grpc.StatusCode.NOT_FOUND, f"SecretVersion [{path}] not found")
        return entry, secret_path, number

    # ---------------------------------------------------------------- RPCs

    def _create_secret(self, request: types.CreateSecretRequest) -> types.Secret:
        path = f"{request.parent}/secrets/{request.secret_id}"
        if path in self.secrets:
            raise _Abort(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{path}] already exists")
        self.secrets[path] = {
            "name": path,
            "created": _now(),
            "etag": 1,
            "aliases": {},
            "annotations": dict(request.secret.annotations),
            "expire_time": request.secret.expire_time if "expire_time" in request.secret else None,
            "versions": {},
        }
        return self._resource(self.secrets[path])

    def _get_secret(self, request: types.GetSecretRequest) -> types.Secret:
        return self._resource(self._secret(request.name))

    def _update_secret(self, request: types.UpdateSecretRequest) -> types.Secret:
        entry = self._secret(request.secret.name)
        if request.secret.etag and request.secret.etag != f'"{entry["etag"]}"':
            raise _Abort(
                grpc.StatusCode.ABORTED, "etag mismatch: the secret changed since it was read"
            )
        for path in request.update_mask.paths:
            if path == "version_aliases":
                aliases = dict(request.secret.version_aliases)
                for alias, number in aliases.items():
                    version = entry["versions"].get(number)
                    if version is None or version["state"] == types.SecretVersion.State.DESTROYED:
                        raise _Abort(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"alias {alias} -> missing version {number}",
                        )
                entry["aliases"] = aliases
            elif path == "annotations":
                entry["annotations"] = dict(request.secret.annotations)
            elif path == "topics":
                entry["topics"] = [t.name for t in request.secret.topics]
            elif path == "rotation":
                if not entry.get("topics"):  # Secret Manager's rule
                    raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "a rotation needs at least one topic")
                entry["rotation"] = request.secret.rotation
            else:
                raise _Abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unsupported update_mask path {path}"
                )
        entry["etag"] += 1
        return self._resource(entry)

    def _add_version(self, request: types.AddSecretVersionRequest) -> types.SecretVersion:
        entry = self._secret(request.parent)
        data = request.payload.data
        has_crc = "data_crc32c" in request.payload
        if has_crc and crc32c(data) != request.payload.data_crc32c:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "Checksum mismatch")
        number = max(entry["versions"], default=0) + 1
        entry["versions"][number] = {
            "data": data,
            "state": types.SecretVersion.State.ENABLED,
            "created": _now(),
            "crc": has_crc,
        }
        return self._version_resource(
            f"{request.parent}/versions/{number}", entry["versions"][number]
        )

    def _access(
        self, request: types.AccessSecretVersionRequest
    ) -> types.AccessSecretVersionResponse:
        entry, secret_path, number = self._version(request.name)
        version = entry["versions"][number]
        if version["state"] != types.SecretVersion.State.ENABLED:
            state = types.SecretVersion.State(version["state"]).name
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"SecretVersion {number} is in {state} state"
            )
        return types.AccessSecretVersionResponse(
            name=f"{secret_path}/versions/{number}",
            payload=types.SecretPayload(data=version["data"], data_crc32c=crc32c(version["data"])),
        )

    def _get_version(self, request: types.GetSecretVersionRequest) -> types.SecretVersion:
        entry, secret_path, number = self._version(request.name)
        return self._version_resource(f"{secret_path}/versions/{number}", entry["versions"][number])

    def _list_versions(
        self, request: types.ListSecretVersionsRequest
    ) -> types.ListSecretVersionsResponse:
        entry = self._secret(request.parent)
        versions = [
            self._version_resource(f"{request.parent}/versions/{n}", v)
            for n, v in sorted(entry["versions"].items(), reverse=True)
        ]
        return types.ListSecretVersionsResponse(versions=versions, total_size=len(versions))

    def _set_state(self, request: Any, state: types.SecretVersion.State) -> types.SecretVersion:
        entry, secret_path, number = self._version(request.name)
        version = entry["versions"][number]
        if version["state"] == types.SecretVersion.State.DESTROYED:
            raise _Abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"SecretVersion {number} is destroyed"
            )
        version["state"] = state
        if state == types.SecretVersion.State.DESTROYED:
            version["data"] = b""
        return self._version_resource(f"{secret_path}/versions/{number}", version)

    def values(self) -> list[bytes]:
        """Every value ever stored (for leak scans)."""
        with self._lock:
            return [
                v["data"]
                for e in self.secrets.values()
                for v in e["versions"].values()
                if v["data"]
            ]


# ============================================================================ HTTP plumbing


class _Server:
    """A ThreadingHTTPServer on loopback running ``handler`` in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        handler.owner = owner  # type: ignore[attr-defined]
        self.httpd = ThreadingHTTPServer((LOOPBACK, 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    owner: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silent: tests read state, not access logs."""

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, payload: Any = None) -> None:
        body = b"" if payload is None else json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _bearer(self) -> str:
        header = self.headers.get("Authorization", "")
        return header[7:] if header.startswith("Bearer ") else ""


# ============================================================================ Vault


class _VaultHandler(_Handler):
    def _route(self) -> tuple[str, str, dict[str, list[str]]] | None:
        parsed = urllib.parse.urlparse(self.path)
        parts = parsed.path.split("/")
        # /v1/<mount>/<op>/<path...>
        if len(parts) < 5 or parts[1] != "v1" or parts[2] != self.owner.mount:
            return None
        return parts[3], "/".join(parts[4:]), urllib.parse.parse_qs(parsed.query)

    def _handle(self, method: str) -> None:
        if self.headers.get("X-Vault-Token") != self.owner.token:
            self._body()
            self._reply(403, {"errors": ["permission denied"]})
            return
        route = self._route()
        if route is None:
            self._reply(404, {"errors": []})
            return
        op, path, query = route
        body = self._body()
        payload = json.loads(body) if body else {}
        self.owner.calls[f"{method} {op}"] += 1
        with self.owner.lock:
            status, answer = self.owner.handle(method, op, path, query, payload)
        self._reply(status, answer)

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    do_PUT = do_POST  # noqa: N815

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class VaultServer:
    """Vault's KV v2 engine: data, metadata (with custom_metadata), delete/undelete/destroy."""

    def __init__(self, token: str, mount: str = "secret") -> None:
        self.token = token
        self.mount = mount
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.secrets: dict[str, dict[str, Any]] = {}
        self._server = _Server(_VaultHandler, self)

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.close()

    @staticmethod
    def _stamp() -> str:
        return _now().isoformat().replace("+00:00", "Z")

    def _version_meta(self, entry: dict[str, Any], number: int) -> dict[str, Any]:
        v = entry["versions"][number]
        return {
            "created_time": v["created_time"],
            "deletion_time": v["deletion_time"],
            "destroyed": v["destroyed"],
            "version": number,
            "custom_metadata": entry["custom_metadata"] or None,
        }

    def handle(
        self, method: str, op: str, path: str, query: dict[str, list[str]], payload: dict[str, Any]
    ) -> tuple[int, Any]:
        entry = self.secrets.get(path)
        if op == "data" and method == "POST":
            if entry is None:
                entry = self.secrets[path] = {
                    "versions": {},
                    "custom_metadata": {},
                    "created_time": self._stamp(),
                    "max_versions": 0,
                }
            cas = (payload.get("options") or {}).get("cas")
            current = max(entry["versions"], default=0)
            if cas is not None and cas != current:
                return 400, {
                    "errors": ["check-and-set parameter did not match the current version"]
                }
            number = current + 1
            entry["versions"][number] = {
                "data": payload["data"],
                "created_time": self._stamp(),
                "deletion_time": "",
                "destroyed": False,
            }
            return 200, {"data": {k: v for k, v in self._version_meta(entry, number).items()}}
        if entry is None:
            return 404, {"errors": []}
        if op == "data" and method == "GET":
            number = int(query["version"][0]) if "version" in query else max(entry["versions"])
            if number not in entry["versions"]:
                return 404, {"errors": []}
            version = entry["versions"][number]
            meta = self._version_meta(entry, number)
            if version["deletion_time"] or version["destroyed"]:
                return 404, {"data": {"data": None, "metadata": meta}}
            return 200, {"data": {"data": version["data"], "metadata": meta}}
        if op == "metadata" and method == "GET":
            versions = {
                str(n): {k: v[k] for k in ("created_time", "deletion_time", "destroyed")}
                for n, v in entry["versions"].items()
            }
            return 200, {
                "data": {
                    "cas_required": False,
                    "created_time": entry["created_time"],
                    "current_version": max(entry["versions"], default=0),
                    "custom_metadata": entry["custom_metadata"] or None,
                    "max_versions": entry["max_versions"],
                    "versions": versions,
                }
            }
        if op == "metadata" and method == "POST":
            custom = payload.get("custom_metadata")
            if custom is not None:
                if len(custom) > 64 or any(
                    len(k) > 128 or len(str(v)) > 512 for k, v in custom.items()
                ):
                    return 400, {"errors": ["custom_metadata exceeds Vault's limits"]}
                entry["custom_metadata"] = {k: str(v) for k, v in custom.items()}
            if "max_versions" in payload:
                entry["max_versions"] = payload["max_versions"]
            return 204, None
        if op in ("delete", "undelete", "destroy") and method == "POST":
            for number in payload.get("versions", []):
                version = entry["versions"].get(int(number))
                if version is None:
                    continue
                if op == "delete":
                    version["deletion_time"] = self._stamp()
                elif op == "undelete" and not version["destroyed"]:
                    version["deletion_time"] = ""
                elif op == "destroy":
                    version["destroyed"] = True
                    version["data"] = None
            return 204, None
        return 405, {"errors": [f"unsupported {method} {op}"]}


# ============================================================================ AWS (moto)


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


# ============================================================================ SMTP


class SmtpSink:
    """An SMTP server (aiosmtpd) keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[dict[str, Any]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
                sink.messages.append(
                    {
                        "from": envelope.mail_from,
                        "to": list(envelope.rcpt_tos),
                        "content": envelope.content.decode("utf-8", "replace"),
                    }
                )
                return "250 OK"

        self.port = free_port()
        self._controller = Controller(Handler(), hostname=LOOPBACK, port=self.port)
        self._controller.start()

    def close(self) -> None:
        self._controller.stop()


# ============================================================================ webhook


class _WebhookHandler(_Handler):
    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        owner = self.owner
        owner.arrivals += 1
        if owner.delay:
            time.sleep(owner.delay)  # a slow receiver: the sender may be killed meanwhile
        valid = verify_signature(
            owner.key,
            self.headers.get(TIMESTAMP_HEADER, ""),
            self.headers.get(NONCE_HEADER, ""),
            body,
            self.headers.get(SIGNATURE_HEADER, ""),
            guard=owner.guard,
        )
        owner.received.append({"valid": valid, "body": body, "headers": dict(self.headers)})
        self._reply(204 if valid else 401)


class WebhookReceiver:
    """Accepts webhook calls whose HMAC signature checks out with ``key`` and whose nonce was
    not used before (replays are rejected); keeps them all. ``delay`` makes it answer slowly."""

    def __init__(self, key: bytes, *, delay: float = 0.0) -> None:
        self.key = key
        self.delay = delay
        self.guard = ReplayGuard()
        self.arrivals = 0  # requests that reached the handler, answered or not
        self.received: list[dict[str, Any]] = []
        self._server = _Server(_WebhookHandler, self)

    @property
    def url(self) -> str:
        return self._server.url + "/hooks/secrets"

    def events(self) -> list[dict[str, Any]]:
        """The verified notifications, decoded."""
        return [json.loads(r["body"]) for r in self.received if r["valid"]]

    def close(self) -> None:
        self._server.close()


# ============================================================================ protected API


class _ApiHandler(_Handler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/health":
            self._reply(200 if self.owner.valid(self._bearer()) else 401, {})
        else:
            self._reply(404, {})

    def do_POST(self) -> None:  # noqa: N802
        owner: ProtectedApi = self.owner
        body = self._body()
        if self.path in ("/admin/tokens", "/admin/revoke"):
            if self._bearer() != owner.admin_token:
                self._reply(401, {"error": "admin token required"})
            elif self.path == "/admin/tokens":
                token, expires = owner.mint()
                self._reply(200, {"token": token, "expire_time": expires})
            else:
                form = urllib.parse.parse_qs(body.decode("utf-8"))
                owner.revoke(form.get("token", [""])[0])
                self._reply(200, {})
            return
        if self.path != "/rows":
            self._reply(404, {})
            return
        ids = json.loads(body)["ids"]
        owner.wait_at_gates()
        token = self._bearer()
        if not owner.valid(token):
            owner.note_rejection(token)
            self._reply(401, {"error": "invalid or revoked token"})
            return
        if owner.latency:
            time.sleep(owner.latency)
        bad = [i for i in ids if i < 0]
        if bad:
            # a careless API that echoes the credential in its error: consumers must scrub it
            self._reply(422, {"error": f"invalid ids {bad[:3]} (Authorization: Bearer {token})"})
            return
        owner.accept(token, ids)
        self._reply(200, {"accepted": len(ids)})


class ProtectedApi:
    """The system a credential protects.

    ``POST /rows`` (bearer token, ``{"ids": [...]}``) accepts the ids if the token was minted
    here and not revoked; ``GET /health`` checks a token; ``POST /admin/tokens`` mints one and
    ``POST /admin/revoke`` (RFC 7009 form ``token=...``) revokes one, both with the admin
    token. Gates hold calls once a number of rows has been accepted, until an event is set, so
    a test can order events against pipeline progress without making anything fail.
    """

    def __init__(self, *, ttl: float = 3600.0, latency: float = 0.0) -> None:
        self.admin_token = secrets.token_urlsafe(16)
        self.ttl = ttl
        self.latency = latency
        self.lock = threading.Lock()
        self.tokens: dict[str, str] = {}  # token -> "valid" | "revoked"
        self.accepted: Counter[int] = Counter()
        self.accepted_rows = 0
        self.calls_by_token: Counter[str] = Counter()  # fingerprint -> accepted calls
        self.rejected_by_token: Counter[str] = Counter()
        self.gates: list[tuple[int, threading.Event]] = []
        self._server = _Server(_ApiHandler, self)

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        for _, event in self.gates:
            event.set()
        self._server.close()

    def mint(self) -> tuple[str, str]:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.tokens[token] = "valid"
        return token, (_now() + timedelta(seconds=self.ttl)).isoformat()

    def revoke(self, token: str) -> None:
        with self.lock:
            if token in self.tokens:
                self.tokens[token] = "revoked"

    def valid(self, token: str) -> bool:
        with self.lock:
            return self.tokens.get(token) == "valid"

    def valid_fingerprints(self) -> set[str]:
        with self.lock:
            return {Secret(t.encode()).fingerprint for t, s in self.tokens.items() if s == "valid"}

    def note_rejection(self, token: str) -> None:
        with self.lock:
            self.rejected_by_token[Secret(token.encode()).fingerprint if token else "-"] += 1

    def accept(self, token: str, ids: list[int]) -> None:
        with self.lock:
            self.accepted.update(ids)
            self.accepted_rows += len(ids)
            self.calls_by_token[Secret(token.encode()).fingerprint] += 1

    def hold_at(self, rows: int) -> threading.Event:
        """Hold ``/rows`` calls once ``rows`` rows are accepted, until the returned event is set."""
        event = threading.Event()
        self.gates.append((rows, event))
        return event

    def wait_at_gates(self) -> None:
        for rows, event in self.gates:
            if self.accepted_rows >= rows:
                event.wait(timeout=60)

    def all_tokens(self) -> list[str]:
        with self.lock:
            return list(self.tokens)


# ============================================================================ every store at once


VAULT_TOKEN = "vault-root-token"
PROVIDERS = ("file", "gcp", "vault", "aws")


class StoreServers:
    """One Secret Manager, Vault and moto server for a whole test module, and the provider
    config for each kind. The configs use environment variables for credentials
    (``BW_TEST_VAULT_TOKEN``, AWS's), which :meth:`environment` gives, so the same configs
    work in subprocesses."""

    def __init__(self) -> None:
        self.gsm = FakeSecretManager().start()
        self.vault = VaultServer(token=VAULT_TOKEN)
        self._moto = moto_endpoint()
        self.aws_url = self._moto.__enter__()

    @staticmethod
    def environment() -> dict[str, str]:
        return {
            "BW_TEST_VAULT_TOKEN": VAULT_TOKEN,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def config(self, kind: str, file_root: str, prefix: str) -> dict[str, Any]:
        """A provider config of ``kind``; ``prefix`` keeps tests apart on shared servers."""
        if kind == "file":
            return {"type": "file", "path": file_root}
        if kind == "gcp":
            return {"type": "gcp", "project": prefix, "emulator_host": self.gsm.address, "timeout": 5}
        if kind == "vault":
            return {
                "type": "vault",
                "url": self.vault.url,
                "token_env": "BW_TEST_VAULT_TOKEN",
                "path_prefix": f"{prefix}/",
            }
        return {"type": "aws", "endpoint_url": self.aws_url, "region": "us-east-1", "timeout": 5}

    def close(self) -> None:
        self._moto.__exit__(None, None, None)
        self.vault.close()
        self.gsm.stop()
