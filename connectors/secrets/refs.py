"""Secret references that resolve through a provider, and references written as config.

:class:`StoredSecret` is a :class:`~connectors.secrets.SecretRef` like ``EnvSecret`` and
``FileSecret``, so anything that takes a reference (the ``mask`` step's key and salt, a
webhook signing key) can take a key from Secret Manager, AWS, Vault or the file store without
knowing which. It holds only the provider config and the name, so it pickles into a pipeline
and resolves on the worker.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.secrets import EnvSecret, FileSecret, Secret, SecretError, SecretRef


@dataclass(frozen=True)
class StoredSecret:
    """A secret read from a provider (or an ordered chain of them) at a stage or version."""

    source_json: str
    name: str
    ref: str = "current"

    @classmethod
    def of(
        cls, source: Mapping[str, Any] | Sequence[Mapping[str, Any]], name: str, ref: str = "current"
    ) -> StoredSecret:
        """A reference to ``name`` at ``ref`` in ``source`` (a provider config or a chain)."""
        return cls(json.dumps(source, sort_keys=True), name, ref)

    @property
    def source_config(self) -> Any:
        """The provider config (a mapping) or chain (a list of mappings)."""
        return json.loads(self.source_json)

    def resolve(self) -> Secret:
        from connectors.secrets.registry import open_source

        source = open_source(self.source_config)
        try:
            return source.access(self.name, self.ref).secret
        finally:
            source.close()


def secret_ref(config: Mapping[str, Any]) -> SecretRef:
    """A reference from config: ``{"env": VAR}``, ``{"file": PATH}`` or
    ``{"store": <provider config or list>, "name": NAME, "ref": "current"}``."""
    if "env" in config:
        return EnvSecret(str(config["env"]))
    if "file" in config:
        return FileSecret(str(config["file"]))
    if "store" in config and "name" in config:
        return StoredSecret.of(config["store"], str(config["name"]), str(config.get("ref", "current")))
    raise SecretError(
        "a secret reference needs 'env', 'file', or 'store' + 'name'; never the value itself"
    )


Url = str | SecretRef
"""An endpoint: a plain URL, or a secret reference holding one (for URLs that carry a
credential, e.g. ``?token=`` webhooks), so the credential never sits in a policy file."""


def url_setting(value: str | Mapping[str, Any]) -> Url:
    """A URL as configured: a string, or ``{"env": ...}``/``{"file": ...}``/``{"store": ...}``."""
    return secret_ref(value) if isinstance(value, Mapping) else str(value)


def resolve_url(url: Url) -> str:
    """The URL to call (a reference is resolved now, at use)."""
    return url if isinstance(url, str) else url.resolve().reveal().decode("utf-8")


def show_url(url: Url) -> str:
    """The URL as it may be printed: credentials redacted, or the reference, never its value."""
    from connectors.secrets.audit import redact_urls

    return redact_urls(url) if isinstance(url, str) else f"<url from {url!r}>"
