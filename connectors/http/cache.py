"""A bounded per-worker cache of responses with a time to live, least recently used first out.

Keyed by the request (method, URL, headers, body; never the credentials), so rows asking the
same thing share one call across batches. Entries expire ``ttl`` seconds after they were
stored; when ``max_entries`` is reached the least recently used goes. Thread-safe, counts hits
and misses. One per worker process per step, so memory is ``max_entries`` responses per step.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

MISSING = object()


class TTLCache:
    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or ttl <= 0:
            raise ValueError("a cache needs max_entries >= 1 and a positive ttl")
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Any:
        """The cached value, or :data:`MISSING` (counted as a hit or a miss)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > self._clock():
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return MISSING

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_many(self, keys: list[Hashable]) -> list[Any]:
        """:meth:`get` of each key (the Redis cache answers a batch in one round trip)."""
        return [self.get(key) for key in keys]

    def put_many(self, items: list[tuple[Hashable, Any]]) -> None:
        for key, value in items:
            self.put(key, value)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
