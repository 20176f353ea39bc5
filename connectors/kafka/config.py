"""Kafka client settings: librdkafka properties whose secrets stay references until a worker needs them.

A transform's constructor arguments are pickled into the pipeline graph (and, on Dataflow, into
the job's staging bucket), so a password given as a plain string would be written to disk.
Properties that hold credentials must therefore be *secret references*
(:class:`connectors.secrets.EnvSecret`, :class:`~connectors.secrets.FileSecret`, or anything with
a ``resolve()`` returning a :class:`~connectors.secrets.Secret`); they are resolved on the worker
in ``DoFn.setup`` and handed straight to librdkafka. ``repr`` shows property names only.

The settings the connector relies on for its guarantees are not negotiable: a consumer never
auto-commits (offsets are committed only once outputs are durable) and a producer is always
idempotent. Configurations that contradict them are refused when the transform is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.errors import BeamwrightError
from connectors.secrets import Secret

SENSITIVE_PROPERTIES = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
    }
)
"""librdkafka properties that hold credentials: they must be given as secret references."""

_SENSITIVE_SUFFIXES = (".password", ".secret", ".passphrase")

# Set by the connector itself, from its own arguments.
_CONSUMER_RESERVED = ("bootstrap.servers", "group.id")
_PRODUCER_RESERVED = ("bootstrap.servers",)


class KafkaConfigError(BeamwrightError, ValueError):
    """A client configuration the connector cannot honour its guarantees with."""


def is_secret_ref(value: object) -> bool:
    """True for a secret reference: an object with a ``resolve()`` method (EnvSecret, ...)."""
    return callable(getattr(value, "resolve", None))


def check_secret_ref(value: object, argument: str) -> None:
    """Raise unless ``value`` is None or a secret reference (``argument`` names it)."""
    if value is not None and not is_secret_ref(value):
        raise KafkaConfigError(f"{argument} must be a secret reference (EnvSecret, FileSecret)")


def is_sensitive(name: str) -> bool:
    """Whether the property ``name`` holds a credential."""
    return name in SENSITIVE_PROPERTIES or name.endswith(_SENSITIVE_SUFFIXES)


class ClientConfig:
    """Bootstrap servers plus librdkafka properties, some of them secret references.

    Args:
        bootstrap_servers: ``host:port[,host:port...]``.
        properties: librdkafka properties; credential properties must be secret references.
        fixed: properties the connector sets (they win over ``properties``).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        properties: Mapping[str, Any] | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> None:
        if not bootstrap_servers:
            raise KafkaConfigError("bootstrap_servers must not be empty")
        props = dict(properties or {})
        for name, value in props.items():
            if isinstance(value, Secret):
                raise KafkaConfigError(
                    f"property {name!r}: pass a secret reference (EnvSecret, FileSecret), not a "
                    "resolved Secret; it is resolved on the worker"
                )
            if is_sensitive(name) and not is_secret_ref(value):
                raise KafkaConfigError(
                    f"property {name!r} holds a credential: pass it as a secret reference "
                    "(EnvSecret, FileSecret), so it never becomes part of the pipeline definition"
                )
        self.bootstrap_servers = bootstrap_servers
        self._properties = props
        self._fixed = dict(fixed or {})

    @property
    def property_names(self) -> list[str]:
        return sorted(set(self._properties) | set(self._fixed))

    def get(self, name: str, default: Any = None) -> Any:
        """A plain (non-secret) property's value; secret references come back unresolved."""
        return self._fixed.get(name, self._properties.get(name, default))

    def resolve(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka configuration, secrets resolved. Call on the worker; never log it."""
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        for name, value in self._properties.items():
            config[name] = (
                value.resolve().reveal().decode("utf-8") if is_secret_ref(value) else value
            )
        config.update(self._fixed)
        config.update(overrides)
        return config

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}=<secret>" if is_secret_ref(self._properties.get(name)) else name
            for name in self.property_names
        )
        return f"ClientConfig({self.bootstrap_servers!r}, [{shown}])"

    __str__ = __repr__


def consumer_config(
    bootstrap_servers: str, group_id: str, properties: Mapping[str, Any] | None
) -> ClientConfig:
    """A consumer's configuration: never auto-commits, never stores offsets on its own."""
    props = dict(properties or {})
    _refuse_reserved(props, _CONSUMER_RESERVED, "consumer_config")
    for name in ("enable.auto.commit", "enable.auto.offset.store"):
        if _truthy(props.get(name, False)):
            raise KafkaConfigError(
                f"consumer_config {name}=true is not allowed: offsets are committed only after the "
                "outputs that hold their records are durable (bundle finalization or "
                "commit_offsets), never automatically"
            )
    if not group_id:
        raise KafkaConfigError("group_id must not be empty: offsets are committed for a group")
    fixed = {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
    }
    return ClientConfig(bootstrap_servers, props, fixed)


def producer_config(bootstrap_servers: str, properties: Mapping[str, Any] | None) -> ClientConfig:
    """A producer's configuration: always idempotent (so retries never duplicate or reorder)."""
    props = dict(properties or {})
    _refuse_reserved(props, _PRODUCER_RESERVED, "producer_config")
    if "enable.idempotence" in props and not _truthy(props["enable.idempotence"]):
        raise KafkaConfigError(
            "producer_config enable.idempotence=false is not allowed: the sink relies on the "
            "idempotent producer so that its retries neither duplicate nor reorder messages"
        )
    if str(props.get("acks", "all")).lower() not in ("all", "-1"):
        raise KafkaConfigError("producer_config acks must be 'all' for an idempotent producer")
    return ClientConfig(bootstrap_servers, props, {"enable.idempotence": True})


def _refuse_reserved(props: Mapping[str, Any], reserved: tuple[str, ...], where: str) -> None:
    for name in reserved:
        if name in props:
            argument = name.replace(".", "_")
            raise KafkaConfigError(f"{where} must not set {name!r}: pass {argument}=... instead")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")
