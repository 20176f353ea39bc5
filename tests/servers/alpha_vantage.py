"""A local Alpha Vantage: ``GET /query?function=TIME_SERIES_DAILY&symbol=S&apikey=K`` answers
the saved response ``<folder>/<S>.json``, with the API's own in-body errors: a wrong key or an
unknown symbol gives ``{"Error Message": ...}`` and, while ``rate_limited`` > 0, requests get
the rate-limit ``{"Note": ...}`` (all with HTTP 200, as the real API does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers.http import JsonHandler, LoopbackServer


class _Handler(JsonHandler):
    def do_GET(self) -> None:  # noqa: N802
        api: AlphaVantageApi = self.owner
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        api.requests.append({k: v for k, v in query.items() if k != "apikey"})
        path = api.folder / f"{query.get('symbol', '')}.json"
        if query.get("apikey") != api.key:
            self._reply(200, {"Error Message": "the parameter apikey is invalid or missing."})
        elif api.rate_limited > 0:
            api.rate_limited -= 1
            self._reply(200, {"Note": "Thank you for using Alpha Vantage! Please slow down."})
        elif query.get("function") != "TIME_SERIES_DAILY" or not path.is_file():
            self._reply(200, {"Error Message": "Invalid API call."})
        else:
            body = path.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


class AlphaVantageApi:
    def __init__(self, folder: Path, key: str, *, rate_limited: int = 0) -> None:
        self.folder = folder
        self.key = key
        self.rate_limited = rate_limited
        self.requests: list[dict[str, Any]] = []
        self._server = LoopbackServer(type("Handler", (_Handler,), {}), self)

    @property
    def url(self) -> str:
        return self._server.url + "/query"

    def close(self) -> None:
        self._server.close()
