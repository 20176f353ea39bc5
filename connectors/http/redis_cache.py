"""A response cache in Redis, shared by every worker of a job (and by later runs, within its
TTL), the way Beam's ``Enrichment`` offers one: ``cache: {type: redis, url: redis://...}``.

Same interface as :class:`connectors.http.cache.TTLCache` (``get``/``put``, plus
``get_many``/``put_many`` so a batch costs one ``MGET`` and one pipelined write, not a round
trip per row), hits and misses counted here. Keys are a SHA-256 of the request's ``repr``
(method, URL, headers, body: never credentials) under ``prefix``; values are JSON, never
pickles, since anything that can write to the Redis could otherwise run code on the workers.
Expiry is Redis's own (``SET ... EX ttl``); eviction is the server's ``maxmemory-policy``.
A Redis that cannot be reached costs the cache, not the run: reads count as misses and writes
are dropped, with one warning per worker. The ``redis`` client is imported on first use
(``pip install 'beamwright[redis]'``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Hashable, Sequence
from typing import Any

from connectors.http.cache import MISSING
from connectors.http.request import decode_json
from connectors.secrets.audit import redact_urls

log = logging.getLogger(__name__)


class RedisCache:
    def __init__(self, url: str, *, ttl: float = 300.0, prefix: str = "beamwright:http:") -> None:
        if ttl <= 0:
            raise ValueError("a cache needs a positive ttl")
        import redis  # optional dependency, on workers only

        self.url = url
        self.ttl = max(1, round(ttl))
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._errors = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self._warned = False
        self.hits = 0
        self.misses = 0

    def _key(self, key: Hashable) -> str:
        return self.prefix + hashlib.sha256(repr(key).encode("utf-8")).hexdigest()

    def _unavailable(self, exc: Exception) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        log.warning(
            "redis cache at %s unavailable (%s): calling the API instead",
            redact_urls(self.url),
            exc,
        )

    def get_many(self, keys: Sequence[Hashable]) -> list[Any]:
        """Cached values (:data:`MISSING` where none), in the order of ``keys``."""
        if not keys:
            return []
        try:
            raw = self._client.mget([self._key(k) for k in keys])
        except self._errors as exc:
            self._unavailable(exc)
            raw = [None] * len(keys)
        found = [MISSING if value is None else decode_json(value) for value in raw]
        hits = sum(value is not MISSING for value in found)
        with self._lock:
            self.hits += hits
            self.misses += len(keys) - hits
        return found

    def get(self, key: Hashable) -> Any:
        return self.get_many([key])[0]

    def put_many(self, items: Sequence[tuple[Hashable, Any]]) -> None:
        if not items:
            return
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for key, value in items:
                    pipe.set(self._key(key), json.dumps(value, separators=(",", ":")), ex=self.ttl)
                pipe.execute()
        except self._errors as exc:
            self._unavailable(exc)

    def put(self, key: Hashable, value: Any) -> None:
        self.put_many([(key, value)])
