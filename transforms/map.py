"""The ``map`` step: reshape rows with safe expressions.

It applies, in this order: rename, cast, derive (expressions compiled to pyarrow.compute),
drop, select. A value that cannot be cast rejects its row to the dead letters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from connectors.records import POSITION_COLUMNS, dead_letters_for_rows
from transforms.coerce import ARROW_TYPES, coerce
from transforms.expressions import Expression, parse
from transforms.step import ArrowStep, StepResult


class Reshaper:
    """Batch processor for :class:`MapRows`."""

    def __init__(
        self,
        *,
        step_name: str,
        run_id: str = "",
        rename: Mapping[str, str] | None = None,
        cast: Mapping[str, str] | None = None,
        derive: Mapping[str, str] | None = None,
        drop: Sequence[str] = (),
        select: Sequence[str] | None = None,
    ) -> None:
        self.step_name = step_name
        self.run_id = run_id
        self.rename = dict(rename or {})
        self.cast = {f: ARROW_TYPES[t] for f, t in (cast or {}).items()}
        self.cast_names = dict(cast or {})
        self.derive: dict[str, Expression] = {f: parse(e) for f, e in (derive or {}).items()}
        self.drop = list(drop)
        self.select = list(select) if select is not None else None

    def setup(self) -> None:
        """Expressions are parsed at construction; nothing else to prepare."""

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        original = table
        if self.rename:
            table = table.rename_columns([self.rename.get(c, c) for c in table.column_names])
        rejected = np.zeros(table.num_rows, dtype=bool)
        reasons: dict[int, list[str]] = {}
        counts: dict[str, int] = {}
        for name, arrow_type in self.cast.items():
            if name not in table.column_names:
                raise KeyError(f"{self.step_name}: cannot cast missing field '{name}'")
            values, failed = coerce(table.column(name), arrow_type)
            table = table.set_column(table.column_names.index(name), name, values)
            if failed is not None:
                idx = np.flatnonzero(failed.to_numpy(zero_copy_only=False))
                shown = (
                    original.column(next((o for o, n in self.rename.items() if n == name), name))
                    .take(pa.array(idx, pa.int64()))
                    .to_pylist()
                )
                for i, v in zip(idx, shown, strict=True):
                    reasons.setdefault(int(i), []).append(
                        f"{name}: {v!r} is not a valid {self.cast_names[name]}"
                    )
                rejected[idx] = True
                counts[f"type:{name}"] = len(idx)
        for name, expr in self.derive.items():
            values = expr.evaluate(table)
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = _insert_before_positions(table, name, values)
        if self.drop:
            table = table.drop_columns([c for c in self.drop if c in table.column_names])
        if self.select is not None:
            keep = self.select + [c for c in POSITION_COLUMNS if c in table.column_names]
            table = table.select(keep)
        if not reasons:
            return StepResult(rows=table, rule_failures=counts)
        bad = np.flatnonzero(rejected)
        dead = dead_letters_for_rows(
            original.take(pa.array(bad, pa.int64())),
            errors=["; ".join(reasons[i]) for i in bad],
            rules=["cast"] * len(bad),
            step=self.step_name,
            run_id=self.run_id,
        )
        return StepResult(
            rows=table.filter(pa.array(~rejected)), dead_letters=dead, rule_failures=counts
        )


def _insert_before_positions(table: pa.Table, name: str, values: Any) -> pa.Table:
    """New fields go after the user's fields, before the hidden position columns."""
    index = table.num_columns
    for i, column in enumerate(table.column_names):
        if column in POSITION_COLUMNS:
            index = i
            break
    return table.add_column(index, name, values)


class MapRows(ArrowStep):
    """Rename, cast, derive, drop and select fields of Arrow batches.

    Args:
        step_name: names counters and dead letters.
        rename: old name -> new name.
        cast: field -> type name; values that cannot be cast reject their row.
        derive: new (or replaced) field -> safe expression over the row's fields.
        drop: fields to remove.
        select: if given, the only fields to keep (in this order).
    """

    def __init__(self, *, step_name: str = "map", **options: Any) -> None:
        super().__init__(Reshaper(step_name=step_name, **options), step_name=step_name)
