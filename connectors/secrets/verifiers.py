"""Health checks a new value must pass before it becomes ``current``.

A rotation that promotes a value the protected system does not accept breaks every consumer
at its next refresh; verifying first turns that outage into a rollback. A check raises
:class:`VerificationFailed` with a reason that goes to the audit log and the notifications,
so it must never contain the value (HTTP bodies are not quoted for that reason).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.errors import RunError
from connectors.secrets import Secret, SecretError
from connectors.secrets.callables import load_callable
from connectors.secrets.refs import Url, resolve_url, show_url, url_setting


class VerificationFailed(RunError):
    """The protected system did not accept the value; the message says why, without it."""


class Verifier(Protocol):
    def verify(self, name: str, secret: Secret) -> None: ...


@dataclass(frozen=True)
class HttpVerifier:
    """Call ``url`` (or the URL a reference holds) with the value in ``header`` (``scheme`` +
    value); pass on ``expect``."""

    url: Url
    method: str = "GET"
    header: str = "Authorization"
    scheme: str = "Bearer"
    expect: Sequence[int] = (200, 204)
    timeout: float = 10.0

    def verify(self, name: str, secret: Secret) -> None:
        credential = secret.reveal().decode("utf-8")
        value = f"{self.scheme} {credential}" if self.scheme else credential
        request = urllib.request.Request(resolve_url(self.url), method=self.method, headers={self.header: value})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            raise VerificationFailed(f"{self.method} {show_url(self.url)} unreachable ({type(exc).__name__})") from None
        if status not in self.expect:
            raise VerificationFailed(f"{self.method} {show_url(self.url)} answered HTTP {status} with the new value")


@dataclass(frozen=True)
class CallableVerifier:
    """User code ``module:function`` called as ``(name, Secret)``; raising fails the check."""

    path: str

    def verify(self, name: str, secret: Secret) -> None:
        try:
            load_callable(self.path)(name, secret)
        except VerificationFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of user code is a failed check
            raise VerificationFailed(f"{self.path} raised {type(exc).__name__}: {exc}") from None


def build_verifier(config: Mapping[str, Any] | None) -> Verifier | None:
    """``{"type": "http", "url", "method", "header", "scheme", "expect": [...]}`` or
    ``{"type": "callable", "path": "m:f"}``; None for no check."""
    if not config:
        return None
    kind = config.get("type")
    try:
        if kind == "http":
            return HttpVerifier(
                url=url_setting(config["url"]),
                method=config.get("method", "GET"),
                header=config.get("header", "Authorization"),
                scheme=config.get("scheme", "Bearer"),
                expect=tuple(config.get("expect", (200, 204))),
                timeout=float(config.get("timeout", 10.0)),
            )
        if kind == "callable":
            load_callable(config["path"])
            return CallableVerifier(config["path"])
    except KeyError as exc:
        raise SecretError(f"{kind} verifier needs {exc.args[0]!r}") from None
    raise SecretError(f"unknown verifier type {kind!r}; use 'http' or 'callable'")
