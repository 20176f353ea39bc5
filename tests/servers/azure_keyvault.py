"""An Azure Key Vault secrets server on 127.0.0.1 (the REST API azure-keyvault-secrets speaks).

HTTPS with a self-signed certificate for 127.0.0.1 made at start (the SDK refuses bearer
tokens over plain HTTP; clients pass :attr:`ca_file` as ``connection_verify``), and Key
Vault's authentication challenge: a request without a valid bearer token gets a 401 with
``WWW-Authenticate: Bearer authorization=..., resource=https://vault.azure.net``, as the SDK's
challenge policy expects before it sends the token. Endpoints (``api-version`` required):
``PUT /secrets/{name}`` (new version), ``GET /secrets/{name}[/{version}]`` (latest or one
version; 403 ``SecretDisabled`` for a disabled one), ``GET /secrets/{name}/versions`` (paged,
``nextLink``), ``PATCH /secrets/{name}/{version}`` (``enabled``, ``exp``, ``tags``,
``contentType``). Times are whole seconds (IntDate), as the service's are, so versions made
within one second tie on ``created``. ``stop``/``start`` take the server down and bring it
back on the same port with its data: a real outage for the client.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from tests.servers.http import LOOPBACK, JsonHandler, QuietHTTPServer

TENANT = "00000000-0000-0000-0000-00000000cafe"
CHALLENGE = f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
PAGE_SIZE = 25  # Key Vault's own maximum page; a secret with more versions crosses pages (nextLink)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (IP SAN) and its key, written to ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _KeyVaultHandler(JsonHandler):
    def setup(self) -> None:
        super().setup()
        self.owner.connections.add(self.connection)

    def finish(self) -> None:
        self.owner.connections.discard(self.connection)
        super().finish()

    def _error(self, status: int, code: str, message: str, inner: str | None = None) -> None:
        error: dict[str, Any] = {"code": code, "message": message}
        if inner:
            error["innererror"] = {"code": inner}
        self._reply(status, {"error": error})

    def _handle(self, method: str) -> None:
        body = self._body()
        owner: AzureKeyVaultServer = self.owner
        if self.headers.get("Authorization") != f"Bearer {owner.token}":
            owner.calls["challenge" if "Authorization" not in self.headers else "unauthorized"] += 1
            self.send_response(401)
            self.send_header("WWW-Authenticate", CHALLENGE)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        parsed = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        if not query.get("api-version"):
            self._error(400, "BadParameter", "The 'api-version' query parameter is missing.")
            return
        parts = [urllib.parse.unquote(p) for p in parsed.path.strip("/").split("/")]
        if not parts or parts[0] != "secrets" or len(parts) < 2:
            self._error(404, "NotFound", "no such endpoint")
            return
        payload = json.loads(body) if body else {}
        owner.calls[f"{method} {'versions' if parts[2:] == ['versions'] else 'secret'}"] += 1
        with owner.lock:
            status, answer = owner.handle(method, parts[1], parts[2:], query, payload, self._base())
        if status >= 400:
            self._error(status, *answer)
        else:
            self._reply(status, answer)

    def _base(self) -> str:
        return f"https://{LOOPBACK}:{self.server.server_address[1]}"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._handle("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._handle("PATCH")


class AzureKeyVaultServer:
    """Key Vault's secrets API over HTTPS: versions with values, ``enabled``, ``exp``/``nbf``,
    ``tags`` and ``contentType``. ``calls`` counts requests (``challenge`` and ``unauthorized``
    count refused ones)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.secrets: dict[str, dict[str, dict[str, Any]]] = {}  # name -> version -> entry
        self.connections: set[Any] = set()  # open keep-alive connections, cut by stop()
        self._dir = tempfile.TemporaryDirectory(prefix="bw-keyvault-")
        cert, key = _self_signed(Path(self._dir.name))
        self.ca_file = str(cert)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self.port = 0
        self._httpd: QuietHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> AzureKeyVaultServer:
        _KeyVaultHandler.owner = self  # type: ignore[attr-defined]
        httpd = QuietHTTPServer((LOOPBACK, self.port), _KeyVaultHandler, bind_and_activate=False)
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        httpd.socket = self._context.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        self._httpd = httpd
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        for connection in list(self.connections):  # an outage also drops pooled connections
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    # ---------------------------------------------------------------- model

    @staticmethod
    def _attributes(entry: dict[str, Any]) -> dict[str, Any]:
        attributes = {
            "enabled": entry["enabled"],
            "created": entry["created"],
            "updated": entry["updated"],
            "recoveryLevel": "Recoverable+Purgeable",
        }
        for key in ("exp", "nbf"):
            if entry.get(key) is not None:
                attributes[key] = entry[key]
        return attributes

    def _item(self, base: str, name: str, version: str, entry: dict[str, Any]) -> dict[str, Any]:
        """A SecretItem (what listing returns: no value)."""
        item = {
            "id": f"{base}/secrets/{name}/{version}",
            "attributes": self._attributes(entry),
            "tags": entry["tags"],
        }
        if entry.get("contentType"):
            item["contentType"] = entry["contentType"]
        return item

    def _bundle(self, base: str, name: str, version: str, entry: dict[str, Any]) -> dict[str, Any]:
        return {**self._item(base, name, version, entry), "value": entry["value"]}

    def handle(
        self,
        method: str,
        name: str,
        rest: list[str],
        query: dict[str, list[str]],
        payload: dict[str, Any],
        base: str,
    ) -> tuple[int, Any]:
        versions = self.secrets.get(name)
        missing = (
            404,
            ("SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."),
        )
        if method == "PUT" and not rest:
            attributes = payload.get("attributes") or {}
            now = int(time.time())
            version = uuid.uuid4().hex
            entry = {
                "value": payload["value"],
                "enabled": attributes.get("enabled", True),
                "exp": attributes.get("exp"),
                "nbf": attributes.get("nbf"),
                "created": now,
                "updated": now,
                "tags": payload.get("tags") or {},
                "contentType": payload.get("contentType"),
                "order": sum(len(v) for v in self.secrets.values()),
            }
            self.secrets.setdefault(name, {})[version] = entry
            return 200, self._bundle(base, name, version, entry)
        if versions is None:
            return missing
        if method == "GET" and rest == ["versions"]:
            ordered = sorted(versions.items(), key=lambda kv: kv[1]["order"])
            start = int(query.get("$skiptoken", ["0"])[0])
            page = ordered[start : start + PAGE_SIZE]
            answer: dict[str, Any] = {
                "value": [self._item(base, name, v, e) for v, e in page],
                "nextLink": None,
            }
            if start + PAGE_SIZE < len(ordered):
                answer["nextLink"] = (
                    f"{base}/secrets/{name}/versions?api-version={query['api-version'][0]}"
                    f"&$skiptoken={start + PAGE_SIZE}"
                )
            return 200, answer
        if len(rest) > 1:
            return 404, ("NotFound", "no such endpoint")
        if rest and rest[0]:
            version = rest[0]
            if version not in versions:
                return missing
        else:
            version = max(versions, key=lambda v: versions[v]["order"])  # latest
        entry = versions[version]
        if method == "GET":
            if not entry["enabled"]:
                return 403, (
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    "SecretDisabled",
                )
            return 200, self._bundle(base, name, version, entry)
        if method == "PATCH":
            attributes = payload.get("attributes") or {}
            for key in ("enabled", "exp", "nbf"):
                if key in attributes:
                    entry[key] = attributes[key]
            if "tags" in payload:
                entry["tags"] = payload["tags"] or {}
            if "contentType" in payload:
                entry["contentType"] = payload["contentType"]
            entry["updated"] = int(time.time())
            return 200, self._item(base, name, version, entry)
        return 405, ("MethodNotAllowed", f"{method} is not supported here")
