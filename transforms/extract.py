"""The ``extract`` step: declared fields picked by JSON path out of nested rows and typed, the
way the ``http`` source types a page's records (:func:`transforms.json_records.decode_records`).

For documents that arrive whole, e.g. webhook payloads read from Kafka: a ``map`` step's
``customer.id`` fails the batch when no payload of it has a ``customer``; here a missing path is
a null, and a value that does not cast is that row's dead letter (rule ``extract``), with the
row's position kept so the original message is recovered. The output holds the declared fields
only (plus the position columns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from connectors.records import POSITION_COLUMNS, strip_positions
from transforms.json_records import SourceField, decode_records
from transforms.step import ArrowStep, StepResult, with_rejected_rows

RULE = "extract"


class Extractor:
    """Batch processor of :class:`Extract`.

    Args:
        step_name: names counters and dead letters.
        fields: the columns to produce.
        run_id: stamped on dead letters.
    """

    def __init__(self, *, step_name: str, fields: Sequence[SourceField], run_id: str = "") -> None:
        self.step_name = step_name
        self.fields = list(fields)
        self.run_id = run_id

    def setup(self) -> None:
        """Nothing to set up: decoding is pure."""

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        records = strip_positions(table).to_pylist()
        rows, bad, reasons = decode_records(records, self.fields)
        keep = None
        if bad:
            skip = set(bad)
            keep = pa.array([i not in skip for i in range(table.num_rows)])
        for name in POSITION_COLUMNS:
            if name in table.column_names:
                column = table.column(name)
                rows = rows.append_column(name, column.filter(keep) if keep is not None else column)
        return with_rejected_rows(
            rows, table, bad, reasons, rule=RULE, step_name=self.step_name, run_id=self.run_id
        )


class Extract(ArrowStep):
    """Pick and type fields of nested rows; ``rows`` and ``dead_letters`` outputs.

    Args: those of :class:`Extractor`.
    """

    def __init__(self, *, step_name: str = "extract", **options: Any) -> None:
        super().__init__(Extractor(step_name=step_name, **options), step_name=step_name)
