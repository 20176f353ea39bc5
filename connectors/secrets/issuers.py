"""Where a new credential value comes from, and how an old one is revoked at its source.

A random token is enough when the protected system checks the store itself. When the system
issues its own keys (an API's key endpoint, a database user), the rotation must *mint* the key
there and *revoke* the old one there once the overlap window ends; disabling the store
version alone would leave the old key working. :class:`HttpIssuer` does both over HTTP
(revocation in RFC 7009's form; its URLs may be secret references when they carry a
credential), :class:`CallableIssuer` calls user code for anything else.
"""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from connectors.secrets import Secret, SecretError, SecretRef
from connectors.secrets.callables import load_callable
from connectors.secrets.refs import Url, resolve_url, secret_ref, show_url, url_setting


@dataclass(frozen=True)
class Issued:
    """A freshly generated value and, if its issuer says so, when it expires."""

    secret: Secret
    expire_time: datetime | None = None


class Issuer(Protocol):
    def issue(self, name: str) -> Issued:
        """A new value for ``name``."""
        ...

    def revoke(self, name: str, secret: Secret) -> None:
        """Make ``secret`` stop working at its source."""
        ...


@dataclass(frozen=True)
class RandomToken:
    """``prefix`` + a URL-safe random token of ``nbytes`` bytes, optionally expiring after ``ttl``
    seconds (the proactive policy rotates before that)."""

    nbytes: int = 32
    prefix: str = ""
    ttl: float | None = None

    def issue(self, name: str) -> Issued:
        value = (self.prefix + secrets.token_urlsafe(self.nbytes)).encode("ascii")
        expires = None
        if self.ttl is not None:
            expires = datetime.now(timezone.utc) + timedelta(seconds=self.ttl)
        return Issued(Secret(value), expires)

    def revoke(self, name: str, secret: Secret) -> None:
        """Nothing to revoke: the token exists only in the store, where it is disabled."""


def _post(url: Url, body: bytes, content_type: str, admin: SecretRef, timeout: float) -> bytes:
    request = urllib.request.Request(
        resolve_url(url),
        data=body,
        method="POST",
        headers={
            "Content-Type": content_type,
            "Authorization": "Bearer " + admin.resolve().reveal().decode("utf-8"),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise SecretError(f"{show_url(url)} answered HTTP {exc.code}") from None
    except OSError as exc:
        raise SecretError(f"{show_url(url)} unreachable ({type(exc).__name__})") from None


@dataclass(frozen=True)
class HttpIssuer:
    """Mint with ``POST mint_url`` (JSON ``{"name": ...}`` in, JSON with ``token_field`` and
    optionally ``expiry_field`` out); revoke with ``POST revoke_url`` (form ``token=...``).
    Both authenticate with the admin credential ``admin`` refers to."""

    mint_url: Url
    revoke_url: Url
    admin: SecretRef
    token_field: str = "token"
    expiry_field: str = "expire_time"
    timeout: float = 10.0

    def issue(self, name: str) -> Issued:
        body = _post(self.mint_url, json.dumps({"name": name}).encode(), "application/json", self.admin, self.timeout)
        try:
            answer = json.loads(body)
            token = answer[self.token_field]
        except (ValueError, KeyError, TypeError):
            raise SecretError(f"{show_url(self.mint_url)} did not answer JSON with a {self.token_field!r} field") from None
        expiry = answer.get(self.expiry_field)
        return Issued(Secret(token.encode("utf-8")), datetime.fromisoformat(expiry) if expiry else None)

    def revoke(self, name: str, secret: Secret) -> None:
        form = urllib.parse.urlencode({"token": secret.reveal().decode("utf-8")}).encode()
        _post(self.revoke_url, form, "application/x-www-form-urlencoded", self.admin, self.timeout)


@dataclass(frozen=True)
class CallableIssuer:
    """User hooks: ``issue`` (``name -> Issued | Secret | str | bytes``) and optionally
    ``revoke`` (``(name, Secret) -> None``), each named ``module:function``."""

    issue_path: str
    revoke_path: str | None = None

    def issue(self, name: str) -> Issued:
        value = load_callable(self.issue_path)(name)
        if isinstance(value, Issued):
            return value
        if isinstance(value, Secret):
            return Issued(value)
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, bytes):
            return Issued(Secret(value))
        raise SecretError(f"{self.issue_path} returned {type(value).__name__}, not a secret value")

    def revoke(self, name: str, secret: Secret) -> None:
        if self.revoke_path:
            load_callable(self.revoke_path)(name, secret)


def build_issuer(config: Mapping[str, Any]) -> Issuer:
    """``{"type": "random", "bytes", "prefix", "ttl"}``, ``{"type": "http", "mint_url",
    "revoke_url", "admin": <ref>}`` or ``{"type": "callable", "issue": "m:f", "revoke": "m:g"}``."""
    kind = config.get("type", "random")
    try:
        if kind == "random":
            ttl = config.get("ttl")
            return RandomToken(int(config.get("bytes", 32)), str(config.get("prefix", "")), None if ttl is None else float(ttl))
        if kind == "http":
            return HttpIssuer(
                mint_url=url_setting(config["mint_url"]),
                revoke_url=url_setting(config["revoke_url"]),
                admin=secret_ref(config["admin"]),
                token_field=config.get("token_field", "token"),
                expiry_field=config.get("expiry_field", "expire_time"),
                timeout=float(config.get("timeout", 10.0)),
            )
        if kind == "callable":
            load_callable(config["issue"])
            return CallableIssuer(config["issue"], config.get("revoke"))
    except KeyError as exc:
        raise SecretError(f"{kind} issuer needs {exc.args[0]!r}") from None
    raise SecretError(f"unknown issuer type {kind!r}; use 'random', 'http' or 'callable'")
