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


class SecretSpec(SpecModel):
    """Where a secret comes from. The value itself never appears in a spec."""

    env: str | None = None
    file: str | None = None
    store: dict[str, Any] | None = Field(
        default=None,
        description="A secret store config (type: gcp|aws|vault|env|file, ...) with 'name' "
        "and optional 'ref' (current, previous, a version): see beamwright secrets.",
    )
    generate: bool = Field(
        default=False,
        description="With 'file': create a random 32-byte key there (mode 0600) when missing. "
        "For local defaults; production keys come from a secret store.",
    )

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


# Report and window metrics: ``count``, or ``sum|min|max|mean|count_distinct(field)``.
METRIC_PATTERN = re.compile(r"^(count|(sum|min|max|mean|count_distinct)\(([A-Za-z_][\w.]*)\))$")
