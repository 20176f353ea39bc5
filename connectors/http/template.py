"""Requests rendered from row fields: ``{field}`` placeholders in the URL, query, headers and
body.

Safe by construction: a value placed in the URL path is percent-encoded with nothing left
unescaped (``/``, ``?``, ``#`` and ``..`` cannot change which resource is called), query values
are form-encoded, header values refuse CR/LF (no header injection), and the body is built as
JSON from the values themselves (a body string that is exactly ``"{field}"`` keeps the value's
JSON type; text around placeholders makes a string), never by pasting text into JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from connectors.http.request import Request

PLACEHOLDER = re.compile(r"\{([A-Za-z_][\w]*)\}")


class TemplateError(ValueError):
    """A row value that cannot go where the template puts it."""


def placeholders(text: str) -> list[str]:
    """Field names ``text`` refers to, in order."""
    return PLACEHOLDER.findall(text)


def _text(value: Any) -> str:
    if value is None:
        raise TemplateError("a {field} in the request is null")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fill(text: str, row: Mapping[str, Any], encode: Any) -> str:
    return PLACEHOLDER.sub(lambda m: encode(_text(row[m.group(1)])), text)


def _body_value(template: Any, row: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        whole = PLACEHOLDER.fullmatch(template)
        if whole:
            return row[whole.group(1)]
        return _fill(template, row, lambda s: s)
    if isinstance(template, Mapping):
        return {k: _body_value(v, row) for k, v in template.items()}
    if isinstance(template, list):
        return [_body_value(v, row) for v in template]
    return template


def _body_fields(template: Any) -> list[str]:
    if isinstance(template, str):
        return placeholders(template)
    if isinstance(template, Mapping):
        return [f for v in template.values() for f in _body_fields(v)]
    if isinstance(template, list):
        return [f for v in template for f in _body_fields(v)]
    return []


class RequestTemplate:
    """How to build one request from one row.

    Args:
        url: base URL plus path, e.g. ``http://api/customers/{id}``; placeholders only in the
            path (the scheme and host are fixed, so a row cannot redirect a call elsewhere).
        method: HTTP method.
        query: query parameters, values may hold placeholders.
        headers: extra headers, values may hold placeholders (never credentials: see auth).
        body: a JSON body template (dicts, lists, strings with placeholders, literals).
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise TemplateError(f"url must start with http:// or https://, not {url!r}")
        authority = rest.split("/", 1)[0]
        if placeholders(authority):
            raise TemplateError("placeholders are allowed in the URL path, not in its host")
        self.url = url
        self.method = method.upper()
        self.query = dict(query or {})
        self.headers = dict(headers or {})
        self.body = body

    def fields(self) -> list[str]:
        """Every row field the template reads (for lineage and checks), in order, once."""
        found = placeholders(self.url)
        for value in self.query.values():
            found += placeholders(value)
        for value in self.headers.values():
            found += placeholders(value)
        found += _body_fields(self.body)
        return list(dict.fromkeys(found))

    def render(self, row: Mapping[str, Any]) -> Request:
        url = _fill(self.url, row, lambda s: quote(s, safe=""))
        if self.query:
            url += "&" if "?" in url else "?"
            url += urlencode({k: _fill(v, row, lambda s: s) for k, v in self.query.items()})
        headers = []
        for name, value in self.headers.items():
            filled = _fill(value, row, lambda s: s)
            if "\r" in filled or "\n" in filled:
                raise TemplateError(f"header {name}: a value holds a line break")
            headers.append((name, filled))
        body = None
        if self.body is not None:
            body = json.dumps(
                _body_value(self.body, row), separators=(",", ":"), sort_keys=True
            ).encode()
            if not any(k.lower() == "content-type" for k, _ in headers):
                headers.append(("Content-Type", "application/json"))
        return Request(self.method, url, tuple(sorted(headers)), body)
