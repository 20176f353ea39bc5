"""The ``tests:`` block of a spec: named cases of mocked inputs and expected results.

Like Beam YAML's ``tests:`` and ``rpk connect test``, a case says what each source holds
(``inputs``: inline ``rows`` or a ``file`` in the source's format) and what must come out:
rows per sink (``outputs``), dead letters by step and rule (``dead_letters``), and counts per
node (``summary``). ``beamwright test`` (:mod:`pipelines.spec_testing`) runs each case on the
local runner with every source mocked and every sink in a temporary directory.

Only the models live here (plain pydantic, imported by :mod:`pipelines.spec`): running,
comparing and rewriting expectations are other modules' jobs.

Example::

    tests:
      - name: rejects_negative_amounts
        inputs:
          orders: {rows: [{order_id: A1, amount: -5}, {order_id: A2, amount: 10}]}
        outputs:
          warehouse: {rows: [{order_id: A2}], fields: [order_id]}
        dead_letters:
          - {step: validate, rule: "between:amount", count: 1}
        summary:
          validate: {rows_in: 2, rows_out: 1, rows_dead_lettered: 1}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, model_validator

from connectors.errors import did_you_mean
from pipelines.spec_base import Name, SpecModel


class MockInput(SpecModel):
    """What a source holds in a test: inline rows or a file, never the real source."""

    rows: list[dict[str, Any]] | None = Field(
        default=None,
        description="Rows, written to a temporary file in the source's format (its real "
        "decoder reads them: JSONL and CSV rows may hold values the schema refuses).",
    )
    file: str | None = Field(
        default=None,
        description="A file in the source's format, relative to the spec file (or, for a "
        "template, to its tests file).",
    )

    @model_validator(mode="after")
    def _one(self) -> MockInput:
        if (self.rows is None) == (self.file is None):
            raise ValueError("give exactly one of 'rows' or 'file'")
        return self


class ExpectedRows(SpecModel):
    """The rows a sink must hold at the end of the case."""

    rows: list[dict[str, Any]] | None = Field(
        default=None,
        description="Every row the sink writes (none missing, none unexpected); null until "
        "recorded with beamwright test --update.",
    )
    ordered: bool = Field(
        default=False, description="Compare in order (default: as a multiset of rows)."
    )
    fields: list[str] | None = Field(
        default=None, description="Compare only these fields (default: every field)."
    )


class ExpectedDeadLetters(SpecModel):
    """Dead letters of one step (a source or step name) and rule: how many, or which rows."""

    step: str | None = Field(default=None, description="The node that rejected them.")
    rule: str = Field(description="The rule id, e.g. between:amount, parse, missing_lookup.")
    count: int | None = Field(default=None, ge=0)
    rows: list[dict[str, Any]] | None = Field(
        default=None,
        description="The rejected rows' fields (only the fields listed are compared; "
        "redacted fields read [REDACTED]).",
    )

    @model_validator(mode="after")
    def _something(self) -> ExpectedDeadLetters:
        if self.count is None and self.rows is None:
            raise ValueError("give 'count' or 'rows' (or both)")
        if self.count is not None and self.rows is not None and self.count != len(self.rows):
            raise ValueError(f"count is {self.count} but {len(self.rows)} row(s) are listed")
        return self


class ExpectedCounts(SpecModel):
    """A node's counts in the run summary; only the ones given are compared."""

    rows_in: int | None = Field(default=None, ge=0)
    rows_out: int | None = Field(default=None, ge=0)
    rows_dead_lettered: int | None = Field(default=None, ge=0)
    rows_filtered: int | None = Field(default=None, ge=0)
    rules: dict[str, int] | None = Field(
        default=None, description="Rule id -> failures (every failing rule must be listed)."
    )


class SpecTestCase(SpecModel):
    """One named case: mocked inputs for every source, and what must come out."""

    name: Name
    description: str = ""
    inputs: dict[str, MockInput] = Field(
        default_factory=dict, description="Source name -> its mocked content (every source)."
    )
    outputs: dict[str, ExpectedRows] = Field(
        default_factory=dict, description="Sink name -> expected rows (unlisted sinks unchecked)."
    )
    dead_letters: list[ExpectedDeadLetters] | None = Field(
        default=None,
        description="Every (step, rule) that rejects rows in this case; [] means none may. "
        "Omitted: dead letters are not checked.",
    )
    summary: dict[str, ExpectedCounts] = Field(
        default_factory=dict, description="Node name -> expected counts."
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_entries(cls, data: Any) -> Any:
        """``warehouse:`` with nothing after it (YAML null) is an entry still to be recorded
        by ``--update``, as ``warehouse: {}`` is."""
        if isinstance(data, dict):
            for key in ("outputs", "summary"):
                if isinstance(data.get(key), dict):
                    data = {**data, key: {k: v or {} for k, v in data[key].items()}}
        return data


def case_problems(spec: Any) -> list[str]:
    """Path + problem + hint for every case of ``spec`` naming a source, sink or node the spec
    lacks, or leaving a source unmocked (a test never reaches a real source)."""
    return cases_problems([(spec, case) for case in spec.tests])


def cases_problems(cases: Sequence[tuple[Any, SpecTestCase]]) -> list[str]:
    """:func:`case_problems` for cases that each run their own spec (a template's cases with
    parameters of their own): each case is checked against its spec, ``tests[i]`` being the
    i-th case, and names must differ across all of them."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, (spec, case) in enumerate(cases):
        where = f"tests[{i}]"
        if case.name in seen:
            problems.append(f"{where}.name: '{case.name}' names another case too; rename one")
        seen.add(case.name)
        sources = [s.name for s in spec.sources]
        sinks = [s.name for s in spec.sinks]
        nodes = sources + [s.name for s in spec.steps] + sinks + ["dead_letters"]
        for name in case.inputs:
            if name not in sources:
                problems.append(
                    f"{where}.inputs.{name}: not a source; {did_you_mean(name, sources)}"
                )
        for name in sources:
            if name not in case.inputs:
                problems.append(
                    f"{where}.inputs: source '{name}' is not mocked, and tests never read real "
                    f"sources; add inputs.{name}: {{rows: [...]}} or {{file: PATH}}"
                )
        for name in case.outputs:
            if name not in sinks:
                problems.append(f"{where}.outputs.{name}: not a sink; {did_you_mean(name, sinks)}")
        for name in case.summary:
            if name not in nodes:
                problems.append(f"{where}.summary.{name}: not a node; {did_you_mean(name, nodes)}")
        for j, letters in enumerate(case.dead_letters or []):
            if letters.step is not None and letters.step not in nodes:
                problems.append(
                    f"{where}.dead_letters[{j}].step: '{letters.step}' is not a source or "
                    f"step; {did_you_mean(letters.step, nodes)}"
                )
    return problems
