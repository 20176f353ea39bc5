"""Provider ``type`` string -> (config class, provider class), the way openlineage-python maps a
transport ``type`` to ``Config.from_dict`` + ``Transport``.

Built-in providers are imported only when their type is first used, so asking for the file
store never imports boto3, hvac or gRPC. A provider config is plain data with no secret in it
(credentials are references: environment variables, files, or the platform's default chain),
which is what lets a pipeline carry it to workers and a policy file store it.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from connectors.secrets import SecretError
from connectors.secrets.model import RotatableStore, SecretSource

C = TypeVar("C")

_BUILTIN: dict[str, tuple[str, str, str]] = {
    "gcp": ("connectors.secrets.gcp", "GcpConfig", "GcpSecretManager"),
    "aws": ("connectors.secrets.aws", "AwsConfig", "AwsSecretsManager"),
    "vault": ("connectors.secrets.vault", "VaultConfig", "VaultKv2"),
    "azure": ("connectors.secrets.azure", "AzureConfig", "AzureKeyVault"),
    "env": ("connectors.secrets.env", "EnvConfig", "EnvProvider"),
    "file": ("connectors.secrets.filestore", "FileStoreConfig", "FileStore"),
}
PROVIDER_EXTRAS = {"aws": "aws", "vault": "vault", "azure": "azure"}
"""The pyproject extra bringing each built-in provider's client library (gcp's is a core
dependency; env and file need none): checked before a run by :mod:`pipelines.extras`."""
_REGISTERED: dict[str, tuple[type, type]] = {}


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Build the dataclass ``cls`` from ``data`` (minus ``type``), naming unknown keys."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    options = {k: v for k, v in data.items() if k != "type"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SecretError(
            f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
            f"expected some of: {', '.join(sorted(known))}"
        )
    try:
        return cls(**options)
    except TypeError as exc:
        raise SecretError(f"{cls.__name__}: {exc}") from None


def register_provider(type_name: str, config_cls: type, provider_cls: type) -> None:
    """Make ``{"type": type_name, ...}`` configs build ``provider_cls(config_cls.from_dict(...))``."""
    _REGISTERED[type_name] = (config_cls, provider_cls)


def provider_types() -> list[str]:
    """Every known provider type."""
    return sorted({*_BUILTIN, *_REGISTERED})


def _classes(type_name: str) -> tuple[type, type]:
    if type_name not in _REGISTERED:
        if type_name not in _BUILTIN:
            raise SecretError(
                f"unknown secret provider type {type_name!r}; known: {', '.join(provider_types())}"
            )
        module_name, config_name, provider_name = _BUILTIN[type_name]
        module = importlib.import_module(module_name)
        register_provider(type_name, getattr(module, config_name), getattr(module, provider_name))
    return _REGISTERED[type_name]


def create_provider(config: Mapping[str, Any]) -> SecretSource:
    """The provider a ``{"type": ..., options...}`` config describes."""
    if "type" not in config:
        raise SecretError(f"a secret provider config needs a 'type' (one of {', '.join(provider_types())})")
    config_cls, provider_cls = _classes(str(config["type"]))
    return provider_cls(config_cls.from_dict(config))


def open_store(config: Mapping[str, Any]) -> RotatableStore:
    """A provider the rotation engine can write to; read-only types are refused here."""
    provider = create_provider(config)
    if not hasattr(provider, "add_version"):
        provider.close()
        raise SecretError(f"secret provider type {config['type']!r} is read-only; rotation needs a store")
    return provider  # type: ignore[return-value]


def open_source(config: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> SecretSource:
    """One provider for a mapping, an ordered :class:`ProviderChain` for a list of them."""
    if isinstance(config, Mapping):
        return create_provider(config)
    from connectors.secrets.chain import ProviderChain

    return ProviderChain([create_provider(c) for c in config])
