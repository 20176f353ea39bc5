"""What a business template is: typed parameters plus an expansion into a pipeline spec.

A template never builds Beam objects; it only writes a :class:`pipelines.spec.PipelineSpec`.
Parameter values arrive already typed and checked (the CLI resolves them with
:func:`pipelines.loading.resolve_parameters`), so ``expand`` only has to make decisions.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from pipelines.spec import ParameterSpec, PipelineSpec

SAMPLE_DATA = Path(__file__).parent / "sample_data"


class Template(Protocol):
    name: str
    version: str
    description: str
    parameters: Mapping[str, ParameterSpec]

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec: ...
