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
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.loading import SpecError, read_spec_file, validation_problems
from pipelines.spec import PipelineSpec

TESTS_DIR_PLACEHOLDER = "${tests_dir}"


@dataclass
class TestTarget:
    """A spec with its test cases, where relative mock paths start, and the file that holds
    the ``tests:`` block."""

    __test__ = False  # not a pytest class

    spec: PipelineSpec
    base_dir: Path
    tests_file: Path
    origin: str

    def exportable_spec(self) -> PipelineSpec:
        """The spec with mock file paths made absolute, so that its tests run from a file
        written anywhere (``templates export --with-tests``)."""
        spec = self.spec.model_copy(deep=True)
        for case in spec.tests:
            for mock in case.inputs.values():
                if mock.file is not None and not Path(mock.file).is_absolute():
                    mock.file = str(self.base_dir / mock.file)
        return spec


def template_tests_file(template: Any) -> Path:
    """``tests/<name>.yaml`` beside the module that defines ``template``."""
    module = sys.modules[type(template).__module__]
    return Path(module.__file__).parent / "tests" / f"{template.name}.yaml"


def load_test_target(target: str, params: Mapping[str, str], *, is_file: bool) -> TestTarget:
    """The spec file or template ``target`` with its tests (SpecError when invalid)."""
    from pipelines.loading import load_spec

    if is_file:
        path = Path(target)
        return TestTarget(load_spec(path, params), path.resolve().parent, path, str(path))
    return _template_target(target, params)


def _template_target(name: str, params: Mapping[str, str]) -> TestTarget:
    from pydantic import TypeAdapter, ValidationError

    import templates
    from pipelines.loading import resolve_parameters
    from pipelines.spec_tests import SpecTestCase

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
    given = {
        k: v.replace(TESTS_DIR_PLACEHOLDER, str(path.parent)) if isinstance(v, str) else v
        for k, v in (data.get("parameters") or {}).items()
    }
    given.update(params)
    values = resolve_parameters(template.parameters, given)
    try:
        spec = template.expand(values)
    except ValueError as exc:
        raise SpecError([str(exc)], origin) from None
    try:
        spec.tests = TypeAdapter(list[SpecTestCase]).validate_python(data.get("tests") or [])
    except ValidationError as exc:
        problems = [
            f"tests{p}" if p.startswith("[") else f"tests.{p}" for p in validation_problems(exc)
        ]
        raise SpecError(problems, str(path)) from None
    return TestTarget(spec, path.parent, path, origin)
