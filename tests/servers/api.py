"""The system a credential protects: it accepts only tokens it minted and has not revoked."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections import Counter
from datetime import timedelta
from typing import Any

from connectors.secrets import Secret
from tests.servers.http import JsonHandler, LoopbackServer, utc_now


class _ApiHandler(JsonHandler):
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
        self._server = LoopbackServer(_ApiHandler, self)

    def issuer_config(self) -> dict[str, Any]:
        """The rotation policy's ``issuer`` minting and revoking tokens here; the admin token
        comes from ``BW_TEST_ADMIN_TOKEN`` (the ``env`` fixture sets it)."""
        return {
            "type": "http",
            "mint_url": self.url + "/admin/tokens",
            "revoke_url": self.url + "/admin/revoke",
            "admin": {"env": "BW_TEST_ADMIN_TOKEN"},
        }

    def verifier_config(self) -> dict[str, Any]:
        """The rotation policy's ``verifier`` checking a token here."""
        return {"type": "http", "url": self.url + "/health"}

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
        return token, (utc_now() + timedelta(seconds=self.ttl)).isoformat()

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
