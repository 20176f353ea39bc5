"""Walking a paginated listing: which request comes after a page, for the four styles APIs use.

- ``page``: ``?page=1&per_page=100``, then ``page=2``..., until a page holds fewer records than
  asked (or none).
- ``offset``: ``?offset=0&limit=100``, then ``offset=100``..., the same stop rule.
- ``cursor``: the answer names the next page's cursor at a JSON path (``next_cursor``,
  ``meta.next``); it is sent back as a query parameter; no cursor (null, empty) ends the walk.
- ``link``: the ``Link`` response header's ``rel="next"`` target (RFC 8288, as GitHub's API
  does); relative targets resolve against the page's URL; no such link ends the walk.
- ``none``: one request.

The walk is a pure function of the request and the answer (no Beam, no I/O), so it is tested
without a server. A page that names itself as its own next page, or a walk longer than
``max_pages``, raises :class:`PagingError` rather than loop forever.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from connectors.errors import RunError
from connectors.http import jsonpath
from connectors.http.request import Request

STYLES = ("none", "page", "offset", "cursor", "link")

_LINK = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]+)*)")
_PARAM = re.compile(r';\s*([A-Za-z0-9!#$&+\-.^_`|~]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]+)')


class PagingError(RunError, ValueError):
    """A listing whose pages cannot be walked (a loop, too many pages, a bad cursor)."""


def next_links(header: str | None) -> list[str]:
    """The ``rel="next"`` targets of a ``Link`` header value (RFC 8288 section 3; ``rel`` may
    hold several space-separated relation types)."""
    if not header:
        return []
    found = []
    for match in _LINK.finditer(header):
        target, params = match.groups()
        for name, value in _PARAM.findall(params):
            if name.lower() == "rel" and "next" in value.strip('"').lower().split():
                found.append(target.strip())
    return found


def with_query(url: str, values: Mapping[str, Any]) -> str:
    """``url`` with ``values`` set in its query (replacing parameters of the same name)."""
    parts = urlsplit(url)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in values]
    query = urlencode([*kept, *((k, str(v)) for k, v in values.items())])
    return urlunsplit(parts._replace(query=query))


@dataclass(frozen=True)
class Pagination:
    """Args:
    style: one of :data:`STYLES`.
    size: records asked per page (``page``/``offset``; also sent with ``cursor`` when
        ``size_param`` is set).
    page_param, start_page: ``page``: the page number's parameter and the first page.
    size_param: the page-size parameter (``per_page``, ``limit``); empty: not sent.
    offset_param: ``offset``: the offset's parameter.
    cursor_param, cursor_path: ``cursor``: the parameter sent and the answer's JSON path.
    max_pages: a walk longer than this fails (a server that never stops).
    """

    style: str = "none"
    size: int = 100
    page_param: str = "page"
    start_page: int = 1
    size_param: str = "per_page"
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    max_pages: int = 100_000

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"pagination style must be one of {STYLES}, not {self.style!r}")
        if self.style == "cursor":
            jsonpath.parse(self.cursor_path)

    def first(self, url: str) -> str:
        """The first page's URL."""
        values: dict[str, Any] = {}
        if self.style == "page":
            values[self.page_param] = self.start_page
        elif self.style == "offset":
            values[self.offset_param] = 0
        if self.style in ("page", "offset", "cursor") and self.size_param:
            values[self.size_param] = self.size
        return with_query(url, values) if values else url

    def next(
        self,
        request: Request,
        body: Any,
        headers: Mapping[str, str],
        records: Sequence[Any],
        page_number: int,
    ) -> Request | None:
        """The request for the page after ``request`` (whose answer was ``body`` with
        ``headers`` and held ``records``), or None when the listing ends. ``page_number``
        counts from 1."""
        if self.style == "none":
            return None
        if page_number >= self.max_pages:
            raise PagingError(
                f"{request.url}: more than max_pages={self.max_pages} pages; raise it if the "
                "listing really is that long"
            )
        if self.style in ("page", "offset"):
            if len(records) < self.size:
                return None
            query = dict(parse_qsl(urlsplit(request.url).query))
            if self.style == "page":
                current = int(query.get(self.page_param, self.start_page))
                url = with_query(request.url, {self.page_param: current + 1})
            else:
                current = int(query.get(self.offset_param, 0))
                url = with_query(request.url, {self.offset_param: current + len(records)})
        elif self.style == "cursor":
            cursor = jsonpath.get(body, jsonpath.parse(self.cursor_path))
            if cursor in (None, ""):
                return None
            if isinstance(cursor, (dict, list)):
                raise PagingError(f"{request.url}: the cursor at '{self.cursor_path}' is not text")
            url = with_query(request.url, {self.cursor_param: cursor})
        else:
            links = next_links(headers.get("link"))
            if not links:
                return None
            url = urljoin(request.url, links[0])
        if url == request.url:
            raise PagingError(f"{request.url}: the next page is the same page (a loop)")
        return Request(request.method, url, request.headers, request.body)
