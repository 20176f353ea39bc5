"""An ordered chain of providers, tried in turn (dlt's configuration-provider model).

The first provider that holds the name answers. Only "not found" moves on to the next one: an
unreachable provider stops the lookup with :class:`SecretUnavailable`, because a lower-priority
provider may hold a stale or unrelated value of the same name, and silently using it would be
worse than the caller keeping its last-known-good value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from connectors.secrets.model import (
    CURRENT,
    SecretNotFound,
    SecretSource,
    StageView,
    VersionedSecret,
)

T = TypeVar("T")


class ProviderChain:
    """Resolve a name through ``providers`` in order."""

    def __init__(self, providers: Sequence[SecretSource]) -> None:
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.providers = list(providers)

    def _first(self, name: str, lookup: Callable[[SecretSource], T]) -> T:
        for provider in self.providers:
            try:
                return lookup(provider)
            except SecretNotFound:
                continue
        tried = ", ".join(type(p).__name__ for p in self.providers)
        raise SecretNotFound(f"secret {name!r} not found in any provider ({tried})")

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        return self._first(name, lambda p: p.access(name, ref))

    def stages(self, name: str) -> StageView:
        return self._first(name, lambda p: p.stages(name))

    def close(self) -> None:
        for provider in self.providers:
            provider.close()
