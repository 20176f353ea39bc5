"""Credential headers for one request, from a :class:`~connectors.secrets.Secret`.

The secret itself is chosen by the caller (the step hands each attempt the value the
credential service's ``Credentials`` helper picked: current, or previous during a rotation's
overlap), so these classes only turn a value into headers:

- ``bearer``: ``Authorization: Bearer <secret>``;
- ``basic``: ``Authorization: Basic base64(username:secret)``;
- ``api_key``: ``<header>: <secret>``;
- ``oauth2``: the client-credentials grant (RFC 6749 section 4.4): the secret is the client
  secret; the access token it buys is cached per client secret until shortly before it
  expires, shared by the worker's threads (one token request at a time), and dropped when
  the API rejects it, so the next attempt buys a fresh one.

Values never reach a log, an error or a key: errors name the scheme and status only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from connectors.errors import BeamwrightError
from connectors.http.pool import ConnectionPool
from connectors.http.request import Request
from connectors.secrets import Secret

SCHEMES = ("bearer", "basic", "api_key", "oauth2")
EXPIRY_MARGIN = 30.0  # seconds: renew an access token this long before it expires


class TokenRejected(BeamwrightError):
    """The OAuth2 token endpoint refused the client credentials (401/403/400 invalid_client)."""


class TokenEndpointError(BeamwrightError):
    """The OAuth2 token endpoint failed for another reason (5xx, bad answer)."""


@dataclass
class AuthScheme:
    """Args:
    type: one of :data:`SCHEMES`.
    username: basic auth's user name.
    header: api_key's header name.
    token_url, client_id, scope: oauth2's token endpoint and client.
    timeout: seconds for a token request.
    """

    type: str = "bearer"
    username: str = ""
    header: str = "X-API-Key"
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    timeout: float = 10.0
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.type not in SCHEMES:
            raise ValueError(f"auth type must be one of {SCHEMES}, not {self.type!r}")
        if self.type == "oauth2" and not (self.token_url and self.client_id):
            raise ValueError("oauth2 auth needs token_url and client_id")
        if self.type == "basic" and not self.username:
            raise ValueError("basic auth needs a username")

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_tokens"], state["_lock"] = {}, None  # tokens stay on the worker that bought them
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def headers(self, secret: Secret, pool: ConnectionPool) -> list[tuple[str, str]]:
        value = secret.reveal().decode("utf-8")
        if self.type == "bearer":
            return [("Authorization", "Bearer " + value)]
        if self.type == "basic":
            pair = base64.b64encode(f"{self.username}:{value}".encode()).decode()
            return [("Authorization", "Basic " + pair)]
        if self.type == "api_key":
            return [(self.header, value)]
        return [("Authorization", "Bearer " + self._access_token(secret, pool))]

    def rejected(self, secret: Secret, sent: list[tuple[str, str]]) -> None:
        """The API refused a request sent with headers ``sent`` (made from ``secret``): forget
        the access token it carried, unless another thread has bought a new one meanwhile."""
        if self.type != "oauth2":
            return
        with self._lock:
            cached = self._tokens.get(secret.fingerprint)
            if cached is not None and ("Authorization", "Bearer " + cached[0]) in sent:
                del self._tokens[secret.fingerprint]

    def _access_token(self, secret: Secret, pool: ConnectionPool) -> str:
        with self._lock:
            cached = self._tokens.get(secret.fingerprint)
            if cached is not None and cached[1] > time.monotonic():
                return cached[0]
            form = {"grant_type": "client_credentials"}
            if self.scope:
                form["scope"] = self.scope
            pair = f"{self.client_id}:{secret.reveal().decode('utf-8')}"
            request = Request(
                "POST",
                self.token_url,
                (("Content-Type", "application/x-www-form-urlencoded"),),
                urlencode(form).encode(),
            )
            response = pool.send(
                request,
                timeout=self.timeout,
                extra_headers=[
                    ("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
                ],
            )
            if response.status in (400, 401, 403):
                raise TokenRejected(
                    f"oauth2 token endpoint refused the client: HTTP {response.status}"
                )
            if response.status != 200:
                raise TokenEndpointError(f"oauth2 token endpoint: HTTP {response.status}")
            try:
                answer = json.loads(response.body)
                token = str(answer["access_token"])
                lifetime = float(answer.get("expires_in", 3600))
            except (ValueError, KeyError, TypeError):
                raise TokenEndpointError(
                    "oauth2 token endpoint: no access_token in its answer"
                ) from None
            expires = time.monotonic() + max(lifetime - EXPIRY_MARGIN, lifetime / 2)
            self._tokens[secret.fingerprint] = (token, expires)
            return token
