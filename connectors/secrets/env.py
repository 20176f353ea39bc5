"""Secrets in environment variables: read-only, ``current`` and ``previous`` only.

``NAME`` holds the current value and ``NAME_PREVIOUS`` (configurable) the previous one, so a
deployment that injects both keeps the overlap window working without a store. The version id
is derived from the value's fingerprint, because environment variables have no versions and
consumers need a changed value to look like a new version.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

from connectors.secrets import Secret
from connectors.secrets.model import CURRENT, PREVIOUS, SecretNotFound, StageView, VersionedSecret
from connectors.secrets.registry import config_from_dict


@dataclass(frozen=True)
class EnvConfig:
    """``prefix`` is prepended to the upper-cased name (non-alphanumerics become ``_``)."""

    prefix: str = ""
    previous_suffix: str = "_PREVIOUS"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        return config_from_dict(cls, data)


class EnvProvider:
    """Read secrets from this process's environment."""

    def __init__(self, config: EnvConfig) -> None:
        self.config = config

    def variable(self, name: str, ref: str = CURRENT) -> str:
        """The environment variable holding ``name`` at stage ``ref``."""
        base = self.config.prefix + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        if ref == CURRENT:
            return base
        if ref == PREVIOUS:
            return base + self.config.previous_suffix
        raise SecretNotFound(f"environment variables hold only current and previous, not {ref!r}")

    def _read(self, name: str, ref: str) -> Secret | None:
        value = os.environ.get(self.variable(name, ref))
        return Secret(value.encode("utf-8")) if value else None

    def access(self, name: str, ref: str = CURRENT) -> VersionedSecret:
        secret = self._read(name, ref)
        if secret is None:
            raise SecretNotFound(f"environment variable {self.variable(name, ref)} is not set")
        return VersionedSecret(name, f"env-{secret.fingerprint}", secret)

    def stages(self, name: str) -> StageView:
        current, previous = self._read(name, CURRENT), self._read(name, PREVIOUS)
        if current is None:
            raise SecretNotFound(f"environment variable {self.variable(name)} is not set")
        return StageView(
            name,
            f"env-{current.fingerprint}",
            f"env-{previous.fingerprint}" if previous else None,
            time.time(),
        )

    def close(self) -> None:
        """Nothing to release."""
