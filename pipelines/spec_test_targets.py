"""What ``beamwright test`` tests: a spec file with a ``tests:`` block, or a template with its
tests file, loaded into one spec plus where its tests are written back (``--update``).

A template keeps its tests beside its module, in ``tests/<name>.yaml`` (package data, so
plugin templates ship theirs the same way)::

    parameters:            # the values the template is expanded with under test (-p wins)
      pseudonym_key_file: ${tests_dir}/data_processing.key
    tests:
      - name: happy_path
        ...

``${tests_dir}`` in a parameter value is the tests file's directory, so a test can name a
fixture shipped beside it whatever the working directory. Mock ``file:`` paths are relative to
the tests file (for a spec file: to the spec file).

A case may carry ``parameters:`` of its own: it runs the template expanded with them, so one
file covers a template's variants (record_sync's three directions), each case checked against
the spec it runs. ``-p`` wins over the file's parameters, and a case's own win over both: they
are what the case tests (``-p`` is for the surroundings, such as a local server's address).
Cases are run in file order. A spec file has one spec, so its cases take no parameters (an
unknown key there).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.loading import SpecError, read_spec_file, validation_problems
from pipelines.spec import PipelineSpec
from pipelines.spec_tests import SpecTestCase

TESTS_DIR_PLACEHOLDER = "${tests_dir}"


@dataclass
class TargetCase:
    """One case and the spec it runs; ``parameters`` are the case's own (shown beside it)."""

    spec: PipelineSpec
    case: SpecTestCase
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        given = ", ".join(f"{k}={v}" for k, v in self.parameters.items())
        return f"{self.case.name} [{given}]" if given else self.case.name


@dataclass
class TestTarget:
    """A spec with its test cases, where relative mock paths start, and the file that holds
    the ``tests:`` block. ``spec`` is expanded with the file's parameters and holds the cases
    that run it (their own parameters, if any, change nothing); ``cases`` lists every case
    (file order) with the spec it runs."""

    __test__ = False  # not a pytest class

    spec: PipelineSpec
    base_dir: Path
    tests_file: Path
    origin: str
    cases: list[TargetCase]

    def exportable_spec(self) -> PipelineSpec:
        """The spec with mock file paths made absolute, so that its tests run from a file
        written anywhere (``templates export --with-tests``). Cases whose own parameters
        make another spec cannot go with it: :meth:`left_out` names them."""
        spec = self.spec.model_copy(deep=True)
        for case in spec.tests:
            for mock in case.inputs.values():
                if mock.file is not None and not Path(mock.file).is_absolute():
                    mock.file = str(self.base_dir / mock.file)
        return spec

    def left_out(self) -> list[TargetCase]:
        """The cases that run another spec than ``spec`` (their own parameters change it)."""
        return [c for c in self.cases if c.case not in self.spec.tests]


def template_tests_file(template: Any) -> Path:
    """``tests/<name>.yaml`` beside the module that defines ``template``."""
    module = sys.modules[type(template).__module__]
    return Path(module.__file__).parent / "tests" / f"{template.name}.yaml"


def load_test_target(target: str, params: Mapping[str, str], *, is_file: bool) -> TestTarget:
    """The spec file or template ``target`` with its tests (SpecError when invalid)."""
    from pipelines.loading import load_spec

    if is_file:
        path = Path(target)
        spec = load_spec(path, params)
        cases = [TargetCase(spec, case) for case in spec.tests]
        return TestTarget(spec, path.resolve().parent, path, str(path), cases)
    return _template_target(target, params)


def _template_target(name: str, params: Mapping[str, str]) -> TestTarget:
    import templates

    try:
        template = templates.get_template(name)
    except KeyError as exc:
        raise SpecError([str(exc.args[0]) + " (or give a spec file path)"], name) from None
    path = template_tests_file(template)
    origin = f"template {name}"
    if not path.is_file():
        raise SpecError(
            [
                f"no tests file: {path}; a template keeps its tests in tests/{name}.yaml beside "
                "its module (parameters: {...} and tests: [...])"
            ],
            origin,
        )
    data = read_spec_file(path)
    unknown = sorted(set(data) - {"parameters", "tests"})
    if unknown:
        raise SpecError(
            [f"{unknown[0]}: unknown key; a tests file has parameters and tests"], str(path)
        )
    shared = _in_tests_dir(data.get("parameters") or {}, path)
    spec = _expanded(template, {**shared, **params}, origin, "")
    raw = data.get("tests") or []
    if not isinstance(raw, list):
        raise SpecError(["tests: must be a list of cases"], str(path))
    own = [_own_parameters(entry, i, path) for i, entry in enumerate(raw)]
    tests = _cases([_without_parameters(entry) for entry in raw], path)
    cases = []
    for i, (case, mine) in enumerate(zip(tests, own, strict=True)):
        given = {**shared, **params, **mine}
        runs = _expanded(template, given, origin, f"tests[{i}].") if mine else spec
        cases.append(TargetCase(runs, case, mine))
    spec.tests = [c.case for c in cases if c.spec == spec]
    return TestTarget(spec, path.parent, path, origin, cases)


def _in_tests_dir(values: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``values`` with ``${tests_dir}`` replaced by the tests file's directory."""
    return {
        k: v.replace(TESTS_DIR_PLACEHOLDER, str(path.parent)) if isinstance(v, str) else v
        for k, v in values.items()
    }


def _own_parameters(entry: Any, i: int, path: Path) -> dict[str, Any]:
    given = entry.get("parameters") if isinstance(entry, dict) else None
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise SpecError(
            [f"tests[{i}].parameters: a mapping of parameter -> value, not {given!r}"], str(path)
        )
    return _in_tests_dir(given, path)


def _without_parameters(entry: Any) -> Any:
    if isinstance(entry, dict):
        return {k: v for k, v in entry.items() if k != "parameters"}
    return entry


def _cases(raw: list[Any], path: Path) -> list[Any]:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(list[SpecTestCase]).validate_python(raw)
    except ValidationError as exc:
        problems = [
            f"tests{p}" if p.startswith("[") else f"tests.{p}" for p in validation_problems(exc)
        ]
        raise SpecError(problems, str(path)) from None


def _expanded(template: Any, given: Mapping[str, Any], origin: str, where: str) -> PipelineSpec:
    """``template`` expanded with ``given``; problems are prefixed with ``where`` (the case
    whose parameters they are)."""
    from pipelines.loading import expand_template

    try:
        return expand_template(template, given)
    except SpecError as exc:
        raise SpecError([where + p for p in exc.problems], origin) from None
    except ValueError as exc:
        raise SpecError([where + str(exc)], origin) from None
