"""Great Expectations 1.x expectation suites as a rule source, evaluated per Arrow batch.

A suite is the JSON GX writes with ``suite.to_json_dict()`` (``gx/expectations/*.json``)::

    {"name": "orders", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "email"}}]}

The GX 0.x spellings ``expectation_type`` and ``expectation_suite_name`` are accepted too, so
older suites keep working.

Three kinds of expectation:

* row-level (column map, column pair map and multicolumn map) expectations say which rows are
  unexpected; those rows are rejected with one readable reason per failed expectation, and
  the caller sends them to dead letters. Those with an exact Arrow equivalent on the batch's
  column types run as pyarrow kernels (:mod:`transforms.gx_compile`, proven against GX by
  ``tests/test_gx_differential.py``); the rest run through GX;
* table-level expectations with a mergeable metric (row count, mean, median, min, max, sum,
  stdev, distinct values: :mod:`transforms.gx_table`) are not judged per batch at all: the
  validate step adds each batch to a partial aggregate and the run judges them once on the
  whole input (:mod:`pipelines.dataset_expectations`);
* other aggregate expectations run through GX on each batch and are reported as outcomes
  only: they cannot reject a row.

Semantics are GX's (pandas engine), applied to one batch at a time unless said otherwise,
which users should know:

* Nulls: apart from ``expect_column_values_to_not_be_null`` / ``..._to_be_null``, GX skips
  missing values in column map expectations (``filter_column_isnull = True`` on
  ``MapMetricProvider``), so a null amount is *not* outside ``between`` and a null email does
  not fail a regex. Add a not-null expectation to reject nulls. GX looks at the pandas
  DataFrame, where a float NaN also counts as missing.
* Every unexpected row is rejected, even when ``mostly`` lets the expectation itself succeed:
  GX still lists the row in ``unexpected_index_list``, and whether a row is acceptable must
  not depend on which batch it happened to land in. ``mostly`` only decides ``success``.
* ``expect_column_values_to_be_unique`` flags *every* row of a duplicated value, not just the
  repeats (``~column.duplicated(keep=False)``). In a bounded run the validate step judges it on
  the whole input (the values repeated anywhere come in as ``repeated``, computed by
  :class:`transforms.gx_unique.RepeatedValues`); a streaming run, or ``evaluate`` without
  ``repeated``, judges the table at hand.
* An expectation GX cannot evaluate on a batch (a column missing from it, a regex that does not
  compile) fails with ``error`` set and rejects no rows.

Importing great_expectations takes seconds, so this module only imports it inside methods and
only for expectations that must run in GX: loading and structurally checking a suite
(``from_file``) never does, ``check_with_gx`` does once when the pipeline is built if some
expectation can only run in GX, and each worker builds its GX objects once, on first use. A
suite that compiles entirely never imports GX.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from connectors import records
from connectors.errors import BeamwrightError, close_matches
from transforms.gx_table import supported as dataset_level_supported

if TYPE_CHECKING:
    from transforms.gx_compile import CompiledCheck
    from transforms.gx_unique import Repeated

_DOMAIN_KWARGS = ("column", "column_A", "column_B", "column_list")

# kwargs that steer how GX reports or runs an expectation rather than what it checks; they do
# not belong in a reason shown to users.
_NON_RULE_KWARGS = frozenset({"result_format", "catch_exceptions", "include_config", "batch_id"})

# Metadata key that carries an expectation's position in the suite into GX's results: GX
# returns results grouped by column, with expectations whose metrics raised first, not in suite
# order (Validator.process_expectations_for_validation and Validator.graph_validate).
_INDEX_META_KEY = "beamwright_expectation_index"

# COMPLETE is the only result format in which GX returns every unexpected row index rather than
# the first ``partial_unexpected_count`` of them (_pandas_map_condition_index). The index query
# is switched off because for pandas it is just the index list rendered into a string.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}

_MAX_VALUE_CHARS = 60


class ExpectationSuiteError(BeamwrightError, ValueError):
    """A suite that cannot be used: says which file, which expectation and what to change."""

    def __init__(self, origin: str, problem: str, *, index: int | None = None) -> None:
        where = origin if index is None else f"{origin}: expectations[{index}]"
        super().__init__(problem, where=where)
        self.origin = origin
        self.index = index


@dataclass(frozen=True)
class ExpectationOutcome:
    """How one expectation of the suite fared on one batch."""

    expectation_type: str
    column: str | None
    kwargs: dict  # as written in the suite, JSON-serialisable
    success: bool
    element_count: int  # rows in the batch
    unexpected_count: int  # unexpected rows (0 for aggregate expectations)
    observed_value: object | None  # JSON-serialisable; set by aggregate expectations
    error: str | None = None  # why GX could not evaluate the expectation on this batch


@dataclass
class SuiteResult:
    """The verdict of a suite on one batch: unexpected rows per expectation and outcomes.

    ``unexpected`` maps a row-level expectation's suite position to the ascending positions
    of its unexpected rows; ``reasons`` and ``types`` give its dead-letter text and type.
    """

    unexpected: dict[int, np.ndarray]
    reasons: dict[int, str]
    types: dict[int, str]
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        """True when every expectation succeeded by GX's verdict (which honours ``mostly``)."""
        return all(o.success for o in self.outcomes)

    @property
    def row_failures(self) -> dict[int, list[str]]:
        """Row -> reasons, in suite order (built per row: for tests and small batches)."""
        return self._per_row(self.reasons)

    @property
    def failed_expectation_per_row(self) -> dict[int, list[str]]:
        return self._per_row(self.types)

    def _per_row(self, label: Mapping[int, str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for index in sorted(self.unexpected):
            for row in self.unexpected[index].tolist():
                out.setdefault(row, []).append(label[index])
        return {row: out[row] for row in sorted(out)}


@dataclass(frozen=True)
class _Expectation:
    type: str
    kwargs: dict
    meta: dict
    column: str | None
    reason: str
    severity: str | None = None  # GX 1.x: critical | warning | info (GX's default: critical)


@dataclass(frozen=True)
class _GxRuntime:
    """The GX objects one ExpectationSuite evaluates with, built once per process."""

    suite: Any  # great_expectations.ExpectationSuite
    batch_definition: Any  # great_expectations.core.batch_definition.BatchDefinition
    row_level: frozenset[int]  # suite positions of the map (row-level) expectations


class ExpectationSuite:
    """A GX expectation suite that evaluates one Arrow table (batch) at a time.

    Construction checks the suite's structure without importing GX, so building a pipeline
    spec stays fast; ``check_with_gx`` does the checks only GX can do. Instances are picklable
    (Beam pickles DoFns): the GX objects are left behind and rebuilt on first use.
    """

    def __init__(self, suite: dict, *, origin: str = "<inline>") -> None:
        self._origin = origin
        self._name, self._expectations = _parse_suite(suite, origin)
        self._lock = threading.Lock()
        self._gx: dict[tuple[int, ...], _GxRuntime] = {}
        self._plans: dict[pa.Schema, tuple[dict[int, CompiledCheck], tuple[int, ...]]] = {}
        self._dataset_level = frozenset(
            index
            for index, exp in enumerate(self._expectations)
            if dataset_level_supported(exp.type, exp.kwargs)
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> ExpectationSuite:
        """Read and structurally check a suite JSON file (GX is not imported)."""
        origin = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ExpectationSuiteError(origin, f"cannot read the suite: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExpectationSuiteError(
                origin, f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
            ) from exc
        return cls(data, origin=origin)

    @property
    def name(self) -> str:
        return self._name

    @property
    def origin(self) -> str:
        return self._origin

    @property
    def columns(self) -> frozenset[str]:
        """Columns the suite refers to, so a pipeline can check them against its schema."""
        return frozenset(c for exp in self._expectations for c in _domain_columns(exp.kwargs))

    @property
    def dataset_level(self) -> list[tuple[int, str, dict]]:
        """(suite position, type, kwargs) of the table-level expectations judged once on the
        whole dataset (:mod:`transforms.gx_table`) rather than per batch."""
        return [
            (i, self._expectations[i].type, self._expectations[i].kwargs)
            for i in sorted(self._dataset_level)
        ]

    @property
    def unique_columns(self) -> dict[int, str]:
        """Suite position -> column of the uniqueness expectations a bounded run judges on the
        whole input (:mod:`transforms.gx_unique`) when the caller passes ``repeated``."""
        from transforms.gx_compile import may_compile
        from transforms.gx_unique import TYPES

        return {
            index: exp.kwargs["column"]
            for index, exp in enumerate(self._expectations)
            if exp.type in TYPES and "column" in exp.kwargs and may_compile(exp.type, exp.kwargs)
        }

    @property
    def expectations(self) -> list[tuple[str, dict, dict]]:
        """(type, kwargs, meta) of every expectation, in suite order."""
        return [(e.type, e.kwargs, e.meta) for e in self._expectations]

    def severity(self, index: int) -> str:
        """The GX 1.x ``severity`` of the expectation at ``index`` (GX's default: critical)."""
        return self._expectations[index].severity or "critical"

    def needs_gx(self) -> tuple[int, ...]:
        """Positions of the expectations no schema can compile: they always run in GX."""
        from transforms.gx_compile import may_compile

        return tuple(
            index
            for index, exp in enumerate(self._expectations)
            if index not in self._dataset_level and not may_compile(exp.type, exp.kwargs)
        )

    def check_with_gx(self) -> None:
        """Check what only GX knows: that every type exists and its kwargs are valid.

        Meant to run when the pipeline is built, before it runs, so a typo fails the launch
        instead of every batch. Only the expectations that always run in GX are checked, so a
        suite that compiles to Arrow entirely does not import GX at all.
        """
        indexes = self.needs_gx()
        if indexes:
            self._runtime(indexes)

    def evaluate(
        self, table: pa.Table, *, compiled: bool = True, repeated: Repeated | None = None
    ) -> SuiteResult:
        """Run the suite on ``table``; row indexes in the result are positions in ``table``.

        Expectations compiled for this table's schema (:mod:`transforms.gx_compile`) run as
        Arrow kernels; the rest run through GX in one validation, and GX is imported only then.
        Dataset-level expectations (:attr:`dataset_level`) are not judged here.
        ``compiled=False`` runs every expectation through GX: the oracle the compiled path is
        tested against. With ``repeated`` (the values held more than once in the whole input,
        :class:`transforms.gx_unique.RepeatedValues`) the :attr:`unique_columns` expectations
        flag the rows holding those values instead of judging this table on its own.
        """
        table = records.strip_positions(table)
        if compiled:
            checks, through_gx = self._plan(table.schema)
        else:
            checks = {}
            through_gx = tuple(
                i for i in range(len(self._expectations)) if i not in self._dataset_level
            )
        across: dict[int, CompiledCheck] = {}
        if repeated is not None:
            across = {
                i: self._across_batches(i, c, repeated) for i, c in self.unique_columns.items()
            }
            checks = {**{i: c for i, c in checks.items() if i not in across}, **across}
            through_gx = tuple(i for i in through_gx if i not in across)
        unexpected: dict[int, np.ndarray] = {}
        outcomes: dict[int, ExpectationOutcome] = {}
        for index, check in sorted(checks.items()):
            exp = self._expectations[index]
            rows, success, count = check.evaluate(table)
            unexpected[index] = rows
            outcomes[index] = ExpectationOutcome(
                expectation_type=exp.type,
                column=exp.column,
                kwargs=exp.kwargs,
                success=success,
                element_count=table.num_rows,
                unexpected_count=count,
                observed_value=None,
            )
        if through_gx:
            self._evaluate_with_gx(table, through_gx, unexpected, outcomes)
        reasons = {i: self._expectations[i].reason for i in unexpected}
        for index in across:
            reasons[index] += " on the whole input"
        return SuiteResult(
            unexpected=unexpected,
            reasons=reasons,
            types={i: self._expectations[i].type for i in unexpected},
            outcomes=[outcomes[i] for i in sorted(outcomes)],
        )

    def _across_batches(self, index: int, column: str, repeated: Repeated) -> CompiledCheck:
        """The uniqueness expectation at ``index`` as a check of a table against the values
        ``repeated`` in the whole input."""
        from transforms.gx_compile import CompiledCheck
        from transforms.gx_unique import unexpected

        exp = self._expectations[index]
        mostly = float(exp.kwargs.get("mostly", 1.0))
        found = repeated.get(index)

        def kernel(table: pa.Table) -> tuple[np.ndarray, int]:
            if column not in table.column_names:
                raise ValueError(f"{exp.reason}: the rows have no column {column!r}")
            rows, considered = unexpected(table.column(column), found)
            mask = np.zeros(table.num_rows, bool)
            mask[rows] = True
            return mask, considered

        return CompiledCheck(exp.type, mostly, kernel)

    def dataset_level_with_gx(self, table: pa.Table) -> list[ExpectationOutcome]:
        """GX's verdicts on the dataset-level expectations with ``table`` as the whole
        dataset: the oracle :mod:`transforms.gx_table` is tested against."""
        indexes = tuple(sorted(self._dataset_level))
        outcomes: dict[int, ExpectationOutcome] = {}
        self._evaluate_with_gx(records.strip_positions(table), indexes, {}, outcomes)
        return [outcomes[i] for i in indexes]

    def _plan(self, schema: pa.Schema) -> tuple[dict[int, CompiledCheck], tuple[int, ...]]:
        """Which expectations run as Arrow kernels on tables of ``schema`` and which in GX."""
        with self._lock:
            plan = self._plans.get(schema)
        if plan is None:
            from transforms.gx_compile import compile_expectation

            compiled: dict[int, CompiledCheck] = {}
            through_gx: list[int] = []
            for index, exp in enumerate(self._expectations):
                if index in self._dataset_level:
                    continue
                check = compile_expectation(exp.type, exp.kwargs, schema)
                if check is None:
                    through_gx.append(index)
                else:
                    compiled[index] = check
            plan = (compiled, tuple(through_gx))
            with self._lock:
                self._plans[schema] = plan
        return plan

    def _evaluate_with_gx(
        self,
        table: pa.Table,
        indexes: tuple[int, ...],
        unexpected: dict[int, np.ndarray],
        outcomes: dict[int, ExpectationOutcome],
    ) -> None:
        runtime = self._runtime(indexes)
        # ignore_metadata: a table that came from pandas may carry pandas metadata that would
        # restore its old index (a named column, or a RangeIndex that does not start at 0).
        # GX reports unexpected rows as index labels, so they are only positions with a fresh
        # RangeIndex, and every Arrow column must stay a column GX can see.
        frame = table.to_pandas(ignore_metadata=True)
        # The datasource's execution engine keeps the batch under a fixed batch id, so two
        # threads validating at once would overwrite each other's data.
        with self._lock:
            batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
            validation = batch.validate(runtime.suite, result_format=dict(_RESULT_FORMAT))
        by_index = {r.expectation_config.meta[_INDEX_META_KEY]: r for r in validation.results}
        for index in indexes:
            exp = self._expectations[index]
            gx_result = by_index[index]
            details = gx_result.result or {}
            error = _exception_message(gx_result.exception_info)
            if index in runtime.row_level and error is None:
                rows = details.get("unexpected_index_list") or ()
                unexpected[index] = np.asarray(sorted(int(r) for r in rows), dtype=np.int64)
            outcomes[index] = ExpectationOutcome(
                expectation_type=exp.type,
                column=exp.column,
                kwargs=exp.kwargs,
                success=bool(gx_result.success),
                element_count=int(details.get("element_count", table.num_rows)),
                unexpected_count=int(details.get("unexpected_count") or 0),
                observed_value=_json_value(details.get("observed_value")),
                error=error,
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state["_gx"] = {}  # GX objects are neither small nor reliably picklable
        state["_plans"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"ExpectationSuite(name={self._name!r}, origin={self._origin!r}, "
            f"expectations={len(self._expectations)})"
        )

    def _runtime(self, indexes: tuple[int, ...]) -> _GxRuntime:
        with self._lock:
            if indexes not in self._gx:
                self._gx[indexes] = self._build_gx(indexes)
            return self._gx[indexes]

    def _build_gx(self, indexes: tuple[int, ...]) -> _GxRuntime:
        """GX objects for the expectations at ``indexes`` (the rest run elsewhere)."""
        gx = _import_gx()
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )
        from great_expectations.expectations.expectation import (
            ColumnMapExpectation,
            ColumnPairMapExpectation,
            MulticolumnMapExpectation,
        )

        gx_expectations = [self._gx_expectation(i, self._expectations[i]) for i in indexes]
        row_level = frozenset(
            index
            for index, gx_exp in zip(indexes, gx_expectations, strict=True)
            if isinstance(
                gx_exp, (ColumnMapExpectation, ColumnPairMapExpectation, MulticolumnMapExpectation)
            )
        )
        # Everything in memory: no stores, no data docs (the default ephemeral context gets a
        # temporary docs site), no analytics, and no progress bars (the default context draws a
        # tqdm bar on stderr for every validation).
        config = DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        )
        context = gx.get_context(project_config=config, mode="ephemeral")
        batch_definition = (
            context.data_sources.add_pandas("beamwright")
            .add_dataframe_asset("batch")
            .add_batch_definition_whole_dataframe("whole batch")
        )
        suite = gx.ExpectationSuite(name=self._name, expectations=gx_expectations)
        return _GxRuntime(suite=suite, batch_definition=batch_definition, row_level=row_level)

    def _gx_expectation(self, index: int, exp: _Expectation) -> Any:
        """Build one GX Expectation, or say precisely why it cannot be built.

        Each is built on its own because gx.ExpectationSuite(expectations=[dicts]) logs and
        silently drops an invalid expectation instead of raising.
        """
        from great_expectations.compatibility.pydantic import ValidationError
        from great_expectations.exceptions import (
            ExpectationNotFoundError,
            InvalidExpectationConfigurationError,
        )
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )
        from great_expectations.expectations.registry import (
            get_expectation_impl,
            list_registered_expectation_implementations,
        )

        try:
            impl = get_expectation_impl(exp.type)
        except ExpectationNotFoundError:
            known = [
                name
                for name in list_registered_expectation_implementations()
                if name.startswith("expect_")
            ]
            close = close_matches(exp.type, known)
            hint = (
                f"did you mean {', '.join(close)}?"
                if close
                else "see https://greatexpectations.io/expectations/ for the valid types"
            )
            raise ExpectationSuiteError(
                self._origin, f"unknown expectation type {exp.type!r}; {hint}", index=index
            ) from None
        configuration = ExpectationConfiguration(
            type=exp.type,
            kwargs=copy.deepcopy(exp.kwargs),  # outcomes report exp.kwargs; GX must not share it
            meta={**exp.meta, _INDEX_META_KEY: index},
        )
        try:
            return configuration.to_domain_obj()
        except ValidationError as exc:
            fields = sorted(impl.__fields__)
            problem = _describe_validation_error(exc, fields)
        except InvalidExpectationConfigurationError as exc:
            problem = str(exc)
        raise ExpectationSuiteError(
            self._origin, f"invalid kwargs for {exp.type}: {problem}", index=index
        )


def _parse_suite(suite: object, origin: str) -> tuple[str, list[_Expectation]]:
    """Check a suite's structure (no GX needed) and normalise the 0.x spellings."""
    if not isinstance(suite, Mapping):
        raise ExpectationSuiteError(origin, f"a suite is a JSON object, got {_json_type(suite)}")
    name = suite.get("name", suite.get("expectation_suite_name"))
    if not isinstance(name, str) or not name:
        raise ExpectationSuiteError(
            origin, 'the suite needs a non-empty "name" (GX 0.x: "expectation_suite_name")'
        )
    entries = suite.get("expectations")
    if not isinstance(entries, list):
        raise ExpectationSuiteError(
            origin,
            f'"expectations" must be a list of expectations, got {_json_type(entries)}',
        )
    return name, [_parse_expectation(entry, origin, index) for index, entry in enumerate(entries)]


def _parse_expectation(entry: object, origin: str, index: int) -> _Expectation:
    def fail(problem: str) -> ExpectationSuiteError:
        return ExpectationSuiteError(origin, problem, index=index)

    if not isinstance(entry, Mapping):
        raise fail(f'an expectation is an object with "type" and "kwargs", got {_json_type(entry)}')
    if (
        "type" in entry
        and "expectation_type" in entry
        and entry["type"] != entry["expectation_type"]
    ):
        raise fail('"type" and "expectation_type" disagree; keep only "type"')
    exp_type = entry.get("type", entry.get("expectation_type"))
    if exp_type is None:
        raise fail('missing "type", e.g. "type": "expect_column_values_to_not_be_null"')
    if not isinstance(exp_type, str) or not exp_type.startswith("expect_"):
        raise fail(
            f'"type" must be an expectation type name starting with "expect_", got {exp_type!r}'
        )
    kwargs = entry.get("kwargs", {})
    if not isinstance(kwargs, Mapping):
        raise fail(f'"kwargs" must be an object, got {_json_type(kwargs)}')
    meta = entry.get("meta") or {}
    if not isinstance(meta, Mapping):
        raise fail(f'"meta" must be an object, got {_json_type(meta)}')
    try:
        # A JSON round trip proves the kwargs are JSON-serialisable (outcomes report them) and
        # detaches them from the caller's dict.
        kwargs = json.loads(json.dumps(dict(kwargs)))
    except (TypeError, ValueError) as exc:
        raise fail(f'"kwargs" must be JSON-serialisable: {exc}') from exc
    for key in ("column", "column_A", "column_B"):
        if key in kwargs and (not isinstance(kwargs[key], str) or not kwargs[key]):
            raise fail(f'"{key}" must be a column name, got {kwargs[key]!r}')
    if "column_list" in kwargs and not (
        isinstance(kwargs["column_list"], list)
        and all(isinstance(c, str) and c for c in kwargs["column_list"])
    ):
        raise fail(f'"column_list" must be a list of column names, got {kwargs["column_list"]!r}')
    parameter = _suite_parameter(kwargs)
    if parameter is not None:
        # GX raises SuiteParameterError on every batch when no value is supplied, and a
        # pipeline has nowhere to supply one from.
        raise fail(
            f'kwargs use the suite parameter {{"$PARAMETER": {parameter!r}}}, which is not '
            "supported: write the value itself"
        )
    hidden = [c for c in _domain_columns(kwargs) if c in records.POSITION_COLUMNS]
    if hidden:
        raise fail(f"{hidden[0]!r} is an internal position column, hidden from expectations")
    severity = entry.get("severity")
    if severity is not None and severity not in ("critical", "warning", "info"):
        raise fail(f'"severity" must be critical, warning or info, got {severity!r}')
    return _Expectation(
        type=exp_type,
        kwargs=kwargs,
        meta=dict(meta),
        column=kwargs.get("column"),
        reason=_reason(exp_type, kwargs),
        severity=severity,
    )


def _domain_columns(kwargs: Mapping[str, Any]) -> list[str]:
    columns = [kwargs[k] for k in ("column", "column_A", "column_B") if k in kwargs]
    return columns + list(kwargs.get("column_list", ()))


def _suite_parameter(value: object) -> str | None:
    if isinstance(value, Mapping):
        if "$PARAMETER" in value:
            return str(value["$PARAMETER"])
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _suite_parameter(item)
            if found is not None:
                return found
    return None


def expectation_text(exp_type: str, kwargs: Mapping[str, Any]) -> str:
    """An expectation as users read it in dead letters and run errors (see ``_reason``)."""
    return _reason(exp_type, kwargs)


def _reason(exp_type: str, kwargs: Mapping[str, Any]) -> str:
    """The dead-letter message for a row failing this expectation.

    E.g. ``expect_column_values_to_be_between(amount, min_value=0, max_value=10000)``: the
    rule as written, with the columns first and without GX's reporting switches.
    """
    parts = [str(c) for c in _domain_columns(kwargs)]
    parts += [
        f"{key}={_format_value(value)}"
        for key, value in kwargs.items()
        if key not in _DOMAIN_KWARGS and key not in _NON_RULE_KWARGS
    ]
    return f"{exp_type}({', '.join(parts)})"


def _format_value(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        # GX writes bounds as floats (0 becomes 0.0); show them as the user wrote them.
        text = str(int(value))
    elif isinstance(value, str):
        text = f"'{value}'"
    elif isinstance(value, list):
        text = "[" + ", ".join(_format_value(v) for v in value) + "]"
    else:
        text = json.dumps(value) if isinstance(value, (dict, bool)) or value is None else str(value)
    if len(text) > _MAX_VALUE_CHARS:
        text = text[: _MAX_VALUE_CHARS - 1] + "…"
    return text


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _describe_validation_error(exc: Any, fields: list[str]) -> str:
    """Condense pydantic's error list: one message per kwarg, with a hint for unknown ones."""
    problems: dict[str, str] = {}
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if key in problems:
            continue  # a Union-typed kwarg reports one error per alternative
        message = error["msg"]
        if error["type"] == "value_error.extra":
            close = close_matches(key, fields, n=1)
            message = "unknown kwarg" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif key == "__root__":
            problems[key] = message
            continue
        problems[key] = f"{key}: {message}"
    return "; ".join(problems.values())


def _exception_message(info: Mapping[str, Any] | None) -> str | None:
    """The error text of a GX result, whichever of GX's two exception_info shapes it has.

    An expectation that raised has ``{"raised_exception": True, "exception_message": ...}``;
    one whose metrics failed has ``{"<metric id>": {"exception_message": ...}, ...}``.
    """
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info["raised_exception"] else None
    messages = sorted(
        {
            str(entry.get("exception_message"))
            for entry in info.values()
            if isinstance(entry, Mapping)
        }
    )
    return "; ".join(messages) or None


def _json_value(value: object) -> object | None:
    """Plain JSON types for an observed value, which GX leaves as numpy/pandas scalars."""
    if value is None:
        return None
    from great_expectations.util import convert_to_json_serializable

    # The round trip turns float subclasses such as numpy.float64, which GX's converter
    # passes through, into plain floats.
    return json.loads(json.dumps(convert_to_json_serializable(value)))


def _import_gx() -> Any:
    """Import great_expectations with analytics off and its logging quiet."""
    # GX reads this when it is imported; the context config below disables analytics as well.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    import great_expectations

    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # leave a level the application chose alone
        gx_logger.setLevel(logging.ERROR)
    return great_expectations
