"""The ``lookup`` step: enrich rows from reference data held in a side input.

The reference data (e.g. customers) is read as Arrow batches, concatenated into one table and
handed to every worker as a singleton side input. Each batch is joined to it with Arrow's hash
join (C++), not row by row. Duplicate reference keys keep the last row, so a join never
multiplies rows. Rows without a match keep nulls, are dead-lettered, or are counted as
filtered, as the spec says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.metrics import REFERENCE_VERSION, NodeCounters
from connectors.names import CombineGlobally
from connectors.records import POSITION_COLUMNS, dead_letters_for_rows, strip_positions
from transforms.coerce import ARROW_TYPES, coerce
from transforms.reference_refresh import VersionedTable
from transforms.step import ArrowStep, StepResult

ON_MISSING = ("keep", "reject", "drop")
_ROW = "__bw_row"
_MATCHED = "__bw_matched"


class ConcatTables(beam.CombineFn):
    """Combine Arrow batches into one table (for small reference data used as a side input)."""

    def create_accumulator(self) -> list[pa.Table]:
        return []

    def add_input(self, acc: list[pa.Table], table: pa.Table) -> list[pa.Table]:
        acc.append(strip_positions(table))
        return acc

    def merge_accumulators(self, accs: Sequence[list[pa.Table]]) -> list[pa.Table]:
        return [t for acc in accs for t in acc]

    def extract_output(self, acc: list[pa.Table]) -> pa.Table | None:
        if not acc:
            return None
        return pa.concat_tables(acc, promote_options="permissive")


class Joiner:
    """Batch processor for :class:`Lookup`: ``process(table, reference)``."""

    def __init__(
        self,
        *,
        step_name: str,
        keys: Sequence[str],
        run_id: str = "",
        fields: Sequence[str] | None = None,
        prefix: str = "",
        cast: Mapping[str, str] | None = None,
        on_missing: str = "keep",
    ) -> None:
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}")
        self.step_name = step_name
        self.run_id = run_id
        self.keys = list(keys)
        self.fields = list(fields) if fields is not None else None
        self.prefix = prefix
        self.on_missing = on_missing
        self.cast = dict(cast or {})
        unknown = {f: t for f, t in self.cast.items() if t not in ARROW_TYPES}
        if unknown:
            raise ValueError(f"unknown cast types {unknown}; use one of {sorted(ARROW_TYPES)}")
        self._prepared: tuple[int, pa.Table, dict[str, int]] | None = None

    def setup(self) -> None:
        """The reference table arrives with the first batch; it is prepared once then."""

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_prepared"] = None
        state.pop("_counters", None)
        return state

    def _count_version(self, version: str, rows: int) -> None:
        """Rows joined with a refreshed reference's version (``reference_version:<id>``)."""
        counters = self.__dict__.get("_counters")
        if counters is None:
            counters = self._counters = NodeCounters(self.step_name)
        counters.inc(REFERENCE_VERSION + version, rows)

    def _reference(self, reference: pa.Table, left: pa.Table) -> tuple[pa.Table, dict[str, int]]:
        """Deduplicated reference columns, keys typed like the input's, fields cast and
        prefixed; plus the count of reference values that failed their cast."""
        if self._prepared is not None and self._prepared[0] == id(reference):
            return self._prepared[1], self._prepared[2]
        missing = [k for k in self.keys if k not in reference.column_names]
        if missing:
            raise KeyError(f"{self.step_name}: lookup data has no key field(s) {missing}")
        fields = self.fields
        if fields is None:
            fields = [c for c in reference.column_names if c not in self.keys]
        absent = [f for f in fields if f not in reference.column_names]
        if absent:
            raise KeyError(
                f"{self.step_name}: lookup data has no field(s) {absent}; "
                f"it has {reference.column_names}"
            )
        ref = reference.select(self.keys + fields)
        bad_values: dict[str, int] = {}
        for name, type_name in self.cast.items():
            if name in ref.column_names:
                values, failed = coerce(ref.column(name), ARROW_TYPES[type_name])
                ref = ref.set_column(ref.column_names.index(name), name, values)
                if failed is not None and pc.sum(failed).as_py():
                    bad_values[f"reference_cast:{name}"] = pc.sum(failed).as_py()
        for key in self.keys:
            if key in left.column_names and ref.column(key).type != left.column(key).type:
                values, _ = coerce(ref.column(key), left.column(key).type)
                ref = ref.set_column(ref.column_names.index(key), key, values)
        # keep the last row per key so the join cannot multiply input rows
        ref = ref.append_column(_ROW, pa.array(np.arange(ref.num_rows)))
        last = ref.group_by(self.keys, use_threads=False).aggregate([(_ROW, "max")])
        ref = ref.take(last.column(f"{_ROW}_max")).drop_columns([_ROW])
        renamed = [c if c in self.keys else self.prefix + c for c in ref.column_names]
        ref = ref.rename_columns(renamed)
        ref = ref.append_column(_MATCHED, pa.array(np.ones(ref.num_rows, dtype=bool)))
        self._prepared = (id(reference), ref, bad_values)
        return ref, bad_values

    def process(self, table: pa.Table, reference: Any = None, *rest: Any) -> StepResult:
        """``reference``: the reference table, or a :class:`VersionedTable` when refreshed."""
        if isinstance(reference, VersionedTable):
            self._count_version(reference.version, table.num_rows)
            reference = reference.table
        if reference is None:
            reference = pa.table({k: pa.array([], table.column(k).type) for k in self.keys})
        ref, bad_reference = self._reference(reference, table)
        clash = [c for c in ref.column_names if c in table.column_names and c not in self.keys]
        if clash:
            raise ValueError(
                f"{self.step_name}: lookup fields {clash} already exist in the input; "
                "set 'prefix' or choose 'fields'"
            )
        numbered = table.append_column(_ROW, pa.array(np.arange(table.num_rows)))
        joined = numbered.join(ref, self.keys, join_type="left outer", use_threads=False)
        joined = joined.sort_by(_ROW)
        order = [c for c in table.column_names if c not in POSITION_COLUMNS]
        order += [c for c in ref.column_names if c not in self.keys and c != _MATCHED]
        order += [c for c in POSITION_COLUMNS if c in table.column_names]
        matched = pc.fill_null(joined.column(_MATCHED), False).combine_chunks()
        result = joined.select(order)
        if self.on_missing == "keep" or pc.all(matched).as_py():
            return StepResult(rows=result, rule_failures=bad_reference)
        kept = result.filter(matched)
        if self.on_missing == "drop":
            return StepResult(
                rows=kept, filtered=result.num_rows - kept.num_rows, rule_failures=bad_reference
            )
        rows = joined.column(_ROW).combine_chunks()
        missing_rows = pc.filter(rows, pc.invert(matched))
        dead = dead_letters_for_rows(
            table.take(missing_rows),
            errors=[f"no lookup match for {'+'.join(self.keys)}"] * len(missing_rows),
            rules=[f"lookup:{'+'.join(self.keys)}"] * len(missing_rows),
            step=self.step_name,
            run_id=self.run_id,
        )
        return StepResult(
            rows=kept,
            dead_letters=dead,
            rule_failures={**bad_reference, "no_match": len(missing_rows)},
        )


class Lookup(ArrowStep):
    """Join each batch to reference data given as a Beam side input.

    Args:
        reference: a PCollection of Arrow tables holding the reference data, or, with
            ``refreshed``, the output of :class:`~transforms.reference_refresh.RefreshReference`
            (the newest version joins each batch; rows are counted per version).
        keys: join key field(s), present on both sides.
        fields: reference fields to add (default: all but the keys).
        prefix: prepended to added field names.
        on_missing: keep (nulls), reject (dead letters) or drop (filtered).
    """

    def __init__(
        self,
        reference: beam.PCollection,
        *,
        step_name: str = "lookup",
        refreshed: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(Joiner(step_name=step_name, **options), step_name=step_name)
        self._reference_data = reference
        self._refreshed = refreshed

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        if self._refreshed:  # RefreshReference: already one VersionedTable per pane
            self._side_inputs = (beam.pvalue.AsSingleton(self._reference_data, default_value=None),)
            return super().expand(tables)
        collected = self._reference_data | "CollectReference" >> CombineGlobally(ConcatTables())
        self._side_inputs = (beam.pvalue.AsSingleton(collected),)
        return super().expand(tables)
