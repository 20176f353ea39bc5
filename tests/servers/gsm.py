"""A Secret Manager server on 127.0.0.1 (gRPC, the client library's own types)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.cloud.secretmanager_v1 import types

from connectors.secrets.gcp import crc32c
from tests.servers.http import LOOPBACK, utc_now


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
            "created": utc_now(),
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
                    raise _Abort(
                        grpc.StatusCode.INVALID_ARGUMENT, "a rotation needs at least one topic"
                    )
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
            "created": utc_now(),
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
