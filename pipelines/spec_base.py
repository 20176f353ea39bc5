"""The building blocks every spec model shares: unknown keys refused with a hint, names,
field types, secret references, and the common fields of steps and sinks.

Kind modules (``pipelines/sources``, ``steps``, ``sinks``) build their models from these;
:mod:`pipelines.spec` assembles the whole pipeline model. Plain pydantic: no Beam, no pyarrow.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.errors import closest

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]

FIELD_TYPES = (
    "string",
    "int32",
    "int64",
    "float32",
    "float64",
    "bool",
    "date",
    "timestamp",
    "binary",
)
FieldType = Literal[
    "string", "int32", "int64", "float32", "float64", "bool", "date", "timestamp", "binary"
]


class SpecModel(BaseModel):
    """Base for every spec node: unknown keys are errors, with a hint naming the closest key."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        allowed = set()
        for name, info in cls.model_fields.items():
            allowed.add(name)
            if info.alias:
                allowed.add(info.alias)
        unknown = [k for k in data if k not in allowed]
        if unknown:
            key = str(unknown[0])
            guess = closest(key, sorted(allowed))
            hint = (
                f"did you mean '{guess}'?" if guess else f"valid keys: {', '.join(sorted(allowed))}"
            )
            raise ValueError(f"unknown key '{key}'; {hint}")
        return data

    def needed_extras(self) -> tuple[str, ...]:
        """The optional dependencies (pyproject extras, :mod:`pipelines.extras`) this node
        needs as configured, so a missing one is refused before the run rather than failing
        inside it; none unless the model says otherwise (a PostgreSQL connection, a secret
        in an AWS store, the dataflow runner)."""
        return ()


class SecretSpec(SpecModel):
    """Where a secret comes from. The value itself never appears in a spec."""

    env: str | None = None
    file: str | None = None
    store: dict[str, Any] | None = Field(
        default=None,
        description="A secret store config (type: gcp|aws|vault|azure|env|file, ...) with 'name' "
        "and optional 'ref' (current, previous, a version): see beamwright secrets.",
    )
    generate: bool = Field(
        default=False,
        description="With 'file': create a random 32-byte key there (mode 0600) when missing. "
        "For local defaults; production keys come from a secret store.",
    )

    def needed_extras(self) -> tuple[str, ...]:
        """A store's client library (aws: boto3, vault: hvac, azure: the Key Vault SDK)."""
        from connectors.secrets.registry import PROVIDER_EXTRAS

        if not self.store:
            return ()
        extra = PROVIDER_EXTRAS.get(str(self.store.get("type")))
        return (extra,) if extra else ()

    @model_validator(mode="after")
    def _one_source(self) -> SecretSpec:
        if sum(x is not None for x in (self.env, self.file, self.store)) != 1:
            raise ValueError("give exactly one of 'env', 'file' or 'store'")
        if self.generate and self.file is None:
            raise ValueError("'generate' only applies to 'file' secrets")
        return self


ConfigValue = str | int | float | bool | SecretSpec
"""A client property (librdkafka, HTTP): a plain value or a secret reference."""


class StepBase(SpecModel):
    name: Name
    input: Name | list[Name] | None = Field(
        default=None,
        description="Source or step name(s) feeding this step. Default: the previous step, "
        "or for the first step every source not used as a lookup.",
    )
    description: str = ""

    @property
    def inputs(self) -> list[str]:
        """The names given in ``input`` (empty: the default wiring applies)."""
        return [self.input] if isinstance(self.input, str) else list(self.input or [])


DEAD_LETTERS_INPUT = "dead_letters"


class SinkBase(SpecModel):
    name: Name
    input: Name | None = Field(
        default=None,
        description="Step or source (default: last step); 'dead_letters' reads the run's "
        "dead letters, e.g. for an alert report.",
    )
    audience: Name | None = Field(
        default=None,
        description="Who reads this output (a governance.audiences name): mask rules with "
        "'when' are applied for it, and lineage records it.",
    )


# Report and window metrics: ``count``, or ``sum|min|max|mean|count_distinct(field)``.
METRIC_PATTERN = re.compile(r"^(count|(sum|min|max|mean|count_distinct)\(([A-Za-z_][\w.]*)\))$")


class StrategySpec(SpecModel):
    """How a step paces its calls (see ``transforms/call_strategies.py``, whose plain
    ``StrategyConfig`` has these fields and refuses the same combinations)."""

    kind: Literal["sequential", "parallel", "adaptive", "streaming", "burst"] = Field(
        default="parallel",
        description="sequential: one call in flight per key, in order per key; parallel: up to "
        "max_concurrency in flight per worker; adaptive: concurrency and bulk batch size adapt "
        "to latency and errors (AIMD); streaming: flush by batch_size or "
        "max_buffering_duration; burst: token bucket of 'burst' capacity at 'rate_limit'.",
    )
    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Calls in flight per worker process, at most. A 20 ms API needs ~48 for "
        "2,000 calls/s per worker.",
    )
    min_concurrency: int = Field(default=1, ge=1, description="adaptive: lower bound.")
    batch_size: int = Field(
        default=100, ge=1, description="Rows per bulk call, streaming flush size, adaptive start."
    )
    min_batch_size: int = Field(default=1, ge=1, description="adaptive: lower bound and step.")
    max_batch_size: int = Field(default=1000, ge=1, description="adaptive: upper bound.")
    max_buffering_duration: float | None = Field(
        default=None, gt=0, description="streaming: seconds a partial batch may wait."
    )
    latency_target: float | None = Field(
        default=None,
        gt=0,
        description="adaptive: seconds a call may take and count as fast (default: 3x the "
        "fastest recent call).",
    )
    rate_limit: float | None = Field(
        default=None,
        gt=0,
        description="Requests/s for the whole job; each worker takes its share.",
    )
    burst: int | None = Field(
        default=None, ge=1, description="burst: calls that may go at once (bucket capacity)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> StrategySpec:
        if self.min_concurrency > self.max_concurrency:
            raise ValueError("min_concurrency must not exceed max_concurrency")
        if not self.min_batch_size <= self.batch_size <= self.max_batch_size:
            raise ValueError("min_batch_size <= batch_size <= max_batch_size must hold")
        if self.kind == "burst" and (self.burst is None or self.rate_limit is None):
            raise ValueError(
                "kind 'burst' needs both 'burst' (capacity) and 'rate_limit' (steady rate)"
            )
        if self.burst is not None and self.kind != "burst":
            raise ValueError("'burst' only applies to kind 'burst'")
        return self
