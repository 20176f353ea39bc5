"""The ``filter`` step: keep the rows whose predicate (a safe expression) is true.

The others are counted as filtered, not rejected: filtering is intent, not a data error.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from transforms.expressions import parse
from transforms.step import ArrowStep, StepResult


class Filterer:
    """Batch processor for :class:`FilterRows`."""

    def __init__(self, *, where: str) -> None:
        self.where = parse(where)

    def setup(self) -> None:
        """The predicate is parsed at construction; nothing else to prepare."""

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        keep = self.where.evaluate_predicate(table)
        kept = table.filter(keep)
        return StepResult(rows=kept, filtered=table.num_rows - kept.num_rows)


class FilterRows(ArrowStep):
    """Keep the rows where ``where`` (a safe expression) is true; count the rest as filtered."""

    def __init__(self, *, where: str, step_name: str = "filter") -> None:
        super().__init__(Filterer(where=where), step_name=step_name)
