"""The validate step: declared field types, row rules and Great Expectations suites, per batch.

Order of checks, all vectorised over the batch:

1. every declared field is cast to its type; values that cannot be cast reject their row
   (``"amount": "abc"`` is a rejection, not a crash); required fields must be present;
2. undeclared fields are kept, dropped, or reject their row (``additional_fields``);
3. row rules (:mod:`transforms.rules`) run on the typed columns;
4. an optional Great Expectations suite runs on the typed batch.

A row failing anything goes to the dead letters once, with every reason it failed (joined by
``"; "``) and every failed rule id; its payload is the row exactly as it arrived. Rules with
``severity="warning"`` are counted but reject nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from connectors.panes import is_streaming
from connectors.records import POSITION_COLUMNS, dead_letters_for_rows
from transforms.coerce import ARROW_TYPES, coerce, out_of_range, type_name
from transforms.rules import Rule, failing_values
from transforms.step import ArrowStep, StepResult

ADDITIONAL_FIELDS = ("keep", "drop", "reject")
_TEMPORAL = ("date", "timestamp")


class _Rejections:
    """Reasons per rejected row, gathered across checks.

    Kept as one array of row indices and one list of reasons per failed check; rows are
    grouped and their reasons joined once, in Arrow, when the batch is done.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self._rows: list[np.ndarray] = []
        self._reasons: list[Sequence[str]] = []
        self._rules: list[str] = []
        self.counts: dict[str, int] = {}

    def add(
        self, rule_id: str, indices: Sequence[int], reasons: Sequence[str], *, reject: bool = True
    ) -> None:
        if not len(indices):
            return
        self.counts[rule_id] = self.counts.get(rule_id, 0) + len(indices)
        if reject:
            self._rows.append(np.asarray(indices, dtype=np.int64))
            self._reasons.append(reasons)
            self._rules.append(rule_id)

    def __bool__(self) -> bool:
        return bool(self._rows)

    def rejected_mask(self) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        for rows in self._rows:
            mask[rows] = True
        return mask

    def per_row(self) -> tuple[np.ndarray, pa.Array, pa.Array]:
        """(rejected row indices ascending, "; "-joined reasons, ","-joined rule ids)."""
        rows = np.concatenate(self._rows)
        table = pa.table(
            {
                "row": rows,
                "reason": pa.array([r for reasons in self._reasons for r in reasons], pa.string()),
                "rule": pa.array(np.repeat(self._rules, [len(r) for r in self._rows])),
            }
        )
        grouped = table.group_by("row", use_threads=False).aggregate(
            [("reason", "list"), ("rule", "list")]
        )
        grouped = grouped.sort_by("row")
        return (
            grouped.column("row").to_numpy(),
            pc.binary_join(grouped.column("reason_list"), "; ").combine_chunks(),
            pc.binary_join(grouped.column("rule_list"), ",").combine_chunks(),
        )


def _indices(mask: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False))


def _reject_values(
    found: _Rejections, name: str, column: pa.ChunkedArray, idx: np.ndarray, kind: str
) -> None:
    """Reject rows ``idx`` under ``type:<name>``, showing each value as it arrived.

    Temporal values are shown as Arrow's text: a date out of Python's range (year 0, which
    Arrow parses) cannot be converted to a Python object, so ``to_pylist`` would raise.
    """
    if not len(idx):
        return
    shown = column.take(pa.array(idx, pa.int64()))
    if pa.types.is_temporal(shown.type):
        shown = shown.cast(pa.string())
    limits = " (years 1 to 9999)" if kind in _TEMPORAL else ""
    found.add(
        f"type:{name}",
        idx,
        [f"{name}: {v!r} is not a valid {kind}{limits}" for v in shown.to_pylist()],
    )


class Validator:
    """Batch processor for :class:`Validate` (usable without Beam: ``process(table)``)."""

    def __init__(
        self,
        *,
        step_name: str,
        run_id: str = "",
        fields: Mapping[str, str] | None = None,
        required: Collection[str] = (),
        rules: Sequence[Rule] = (),
        expectations: Any = None,
        additional_fields: str = "keep",
        aggregates_dir: str | None = None,
    ) -> None:
        fields = dict(fields or {})
        unknown = {f: t for f, t in fields.items() if t not in ARROW_TYPES}
        if unknown:
            raise ValueError(f"unknown field types {unknown}; use one of {sorted(ARROW_TYPES)}")
        missing = set(required) - set(fields)
        if missing:
            raise ValueError(f"required fields {sorted(missing)} have no declared type")
        if additional_fields not in ADDITIONAL_FIELDS:
            raise ValueError(f"additional_fields must be one of {ADDITIONAL_FIELDS}")
        self.step_name = step_name
        self.run_id = run_id
        self.fields = {name: ARROW_TYPES[t] for name, t in fields.items()}
        self.type_names = fields
        self.required = frozenset(required)
        self.rules = tuple(rules)
        self.expectations = expectations
        self.additional_fields = additional_fields
        self.aggregates_dir = aggregates_dir
        self._partial: Any = None
        self._start_partial()

    def _start_partial(self) -> None:
        """A fresh partial aggregate for the suite's dataset-level expectations, if any."""
        if self.expectations is None or not self.expectations.dataset_level:
            return
        from transforms.gx_table import Partial, metrics_needed

        needed = metrics_needed((t, kw) for _, t, kw in self.expectations.dataset_level)
        self._partial = Partial(needed)

    def setup(self) -> None:
        """Nothing to build eagerly; a GX suite builds its context on first use."""

    def finish_bundle(self) -> None:
        """Write the bundle's partial aggregate (merged after the run by
        :class:`pipelines.dataset_expectations.DatasetExpectations`)."""
        partial = self._partial
        if partial is None or not partial.rows or self.aggregates_dir is None:
            return
        write_partial(self.aggregates_dir, partial.to_json())
        self._start_partial()

    # -- the checks ---------------------------------------------------------------------
    def _typed(self, table: pa.Table, found: _Rejections) -> pa.Table:
        n = table.num_rows
        columns: dict[str, Any] = {}
        for name, arrow_type in self.fields.items():
            if name not in table.column_names:
                columns[name] = pa.nulls(n, arrow_type)
                if name in self.required:
                    found.add(
                        f"required:{name}", range(n), [f"{name}: required field is missing"] * n
                    )
                continue
            original = table.column(name)
            values, failed = coerce(original, arrow_type)
            columns[name] = values
            if failed is not None:
                idx = _indices(failed)
                _reject_values(found, name, original, idx, self.type_names[name])
            if name in self.required:
                idx = _indices(values.is_null())
                idx = np.setdiff1d(idx, _indices(failed)) if failed is not None else idx
                found.add(f"required:{name}", idx, [f"{name}: required field is null"] * len(idx))
        extras = [
            c for c in table.column_names if c not in self.fields and c not in POSITION_COLUMNS
        ]
        if extras and self.fields and self.additional_fields == "reject":
            for name in extras:
                idx = _indices(table.column(name).is_valid())
                found.add("additional_fields", idx, [f"{name}: field is not declared"] * len(idx))
        if not self.fields or self.additional_fields == "keep":
            for name in extras:
                column = columns[name] = table.column(name)
                outside = out_of_range(column)
                if outside is not None:
                    _reject_values(found, name, column, _indices(outside), type_name(column.type))
        for name in POSITION_COLUMNS:
            if name in table.column_names:
                columns[name] = table.column(name)
        return pa.table(columns) if columns else table

    def _apply_rules(self, typed: pa.Table, found: _Rejections) -> None:
        for rule in self.rules:
            idx = _indices(rule.failures(typed))
            if len(idx):
                values = failing_values(typed, rule, idx)
                found.add(
                    rule.id,
                    idx,
                    [rule.reason(v) for v in values],
                    reject=rule.severity == "error",
                )

    def typed_column(self, table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
        """Column ``name`` of an input batch as the checks see it (cast to its declared type,
        null where it cannot be): what a suite's uniqueness is judged on across batches."""
        if name not in table.column_names:
            return pa.nulls(table.num_rows, self.fields.get(name, pa.null()))
        if name not in self.fields:
            return table.column(name)
        return coerce(table.column(name), self.fields[name])[0]

    def _apply_expectations(
        self, typed: pa.Table, found: _Rejections, repeated: Any = None
    ) -> None:
        """Row-level failures reject rows (every unexpected row, whatever ``mostly`` says:
        see :mod:`transforms.gx_compile`); failed aggregate expectations GX judges per batch
        are counted per batch (they cannot blame a row); an expectation GX cannot run fails
        the run, since silently skipping a declared check is worse than stopping.
        Table-level expectations judged on the whole dataset only gather their partials;
        ``repeated`` (side input) holds the values repeated in the whole input, for the suite's
        uniqueness expectations (:mod:`transforms.gx_unique`)."""
        if self._partial is not None:
            self._partial.add(typed)
        result = self.expectations.evaluate(typed, repeated=repeated)
        for outcome in result.outcomes:
            if outcome.error:
                raise ValueError(
                    f"{self.step_name}: expectation {outcome.expectation_type}"
                    f"({outcome.column or ''}) could not run: {outcome.error}"
                )
            if not outcome.success and not outcome.unexpected_count:
                key = f"gx/{outcome.expectation_type}"
                found.counts[key] = found.counts.get(key, 0) + 1
        for index, rows in result.unexpected.items():
            found.add(f"gx/{result.types[index]}", rows, [result.reasons[index]] * len(rows))

    def process(self, table: pa.Table, *side_inputs: Any) -> StepResult:
        found = _Rejections(table.num_rows)
        typed = self._typed(table, found)
        self._apply_rules(typed, found)
        if self.expectations is not None and typed.num_rows:
            self._apply_expectations(typed, found, *side_inputs)
        counts = {k: v for k, v in found.counts.items() if v}
        if not found:
            return StepResult(rows=typed, rule_failures=counts)
        rejected = found.rejected_mask()
        bad, errors, rules = found.per_row()
        dead = dead_letters_for_rows(
            table.take(pa.array(bad, pa.int64())),
            errors=errors,
            rules=rules,
            step=self.step_name,
            run_id=self.run_id,
        )
        kept = typed.filter(pa.array(~rejected))
        return StepResult(rows=kept, dead_letters=dead, rule_failures=counts)


def write_partial(folder: str, data: dict) -> None:
    """One partial aggregate as a JSON file under ``folder`` (any Beam filesystem)."""
    import json
    import uuid

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(f"{folder.rstrip('/')}/{uuid.uuid4().hex}.json") as out:
        out.write(json.dumps(data).encode("utf-8"))


class Validate(ArrowStep):
    """A PTransform validating Arrow batches; outputs ``rows`` and ``dead_letters``.

    Args:
        step_name: names counters and the dead letters' ``step``.
        run_id: stamped on dead letters.
        fields: field name -> type name (string, int64, float64, bool, date, timestamp, ...).
        required: fields that must be present and non-null.
        rules: :mod:`transforms.rules` instances.
        expectations: a :class:`transforms.expectations.ExpectationSuite`, or None.
        additional_fields: what to do with undeclared fields: keep, drop or reject.
        aggregates_dir: where each bundle writes the partial aggregates of the suite's
            dataset-level expectations (:mod:`transforms.gx_table`), judged after the run.
    """

    def __init__(self, *, step_name: str = "validate", **options: Any) -> None:
        super().__init__(Validator(step_name=step_name, **options), step_name=step_name)

    def expand(self, tables: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        """On a bounded input, a suite's uniqueness expectations are judged on the whole
        input: the values repeated anywhere in it come in as a side input. Streaming runs
        judge them per batch (a combine over an unbounded input never fires)."""
        suite = self.processor.expectations
        columns = suite.unique_columns if suite is not None else {}
        if columns and not is_streaming(tables):
            from transforms.gx_unique import RepeatedValues

            repeated = tables | "RepeatedValues" >> RepeatedValues(
                columns, self.processor.typed_column
            )
            self._side_inputs = (beam.pvalue.AsSingleton(repeated),)
        return super().expand(tables)
