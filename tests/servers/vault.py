"""A Vault KV v2 server on 127.0.0.1 (the HTTP endpoints hvac uses)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections import Counter
from typing import Any

from tests.servers.http import JsonHandler, LoopbackServer, utc_now


class _VaultHandler(JsonHandler):
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
        self._server = LoopbackServer(_VaultHandler, self)

    @property
    def url(self) -> str:
        return self._server.url

    def close(self) -> None:
        self._server.close()

    @staticmethod
    def _stamp() -> str:
        return utc_now().isoformat().replace("+00:00", "Z")

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
