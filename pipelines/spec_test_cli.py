"""``beamwright test SPEC_OR_TEMPLATE [-p KEY=VALUE] [--case NAME] [--update]``.

Runs the target's test cases (:mod:`pipelines.spec_testing`) and prints one line per case and
the differences of the failing ones. Exit codes: 0 every case passed (or ``--update`` recorded
them), 1 a case failed, 2 the spec or its tests are invalid (nothing ran). Beam is imported
only when a case runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK, EXIT_RUN_FAILED


def add_parser(
    subparsers: Any,
    *,
    parse_params: Callable[[list[str]], dict[str, str]],
    is_spec_file: Callable[[str], bool],
) -> argparse.ArgumentParser:
    """Registers ``test`` on the CLI's subparsers; the CLI gives its own reading of
    ``--param`` pairs and of "is this a spec file or a template name"."""
    test = subparsers.add_parser(
        "test",
        help="run the test cases of a spec file or template (mocked inputs, local runner)",
    )
    test.add_argument("target", help="spec file with a tests: block, or a template name")
    test.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    test.add_argument("--case", metavar="NAME", help="run only this case")
    test.add_argument(
        "--update",
        action="store_true",
        help="record the actual outputs as the cases' expectations (rewrites the tests block)",
    )
    test.add_argument(
        "--keep", action="store_true", help="keep each case's temporary directory (printed)"
    )
    test.set_defaults(func=cmd_test, parse_params=parse_params, is_spec_file=is_spec_file)
    return test


def cmd_test(args: argparse.Namespace) -> int:
    from pipelines.loading import SpecError
    from pipelines.spec_test_targets import load_test_target
    from pipelines.spec_testing import run_case, select_cases

    try:
        target = load_test_target(
            args.target, args.parse_params(args.param), is_file=args.is_spec_file(args.target)
        )
    except SpecError as exc:
        print(f"beamwright: {exc}", file=sys.stderr)
        return EXIT_INVALID
    cases = select_cases(target.cases, args.case, target.origin)
    results = {}
    for case in cases:
        result = run_case(case.spec, case.case, target.base_dir, keep=args.keep)
        results[case.case.name] = result
        _report(result, case.label, update=args.update)
    failed = [r for r in results.values() if not r.passed]
    if args.update:
        from pipelines.spec_test_update import update_file

        updated = update_file(target.tests_file, results)
        print(f"updated {len(updated)} case(s) in {target.tests_file}")
        return EXIT_RUN_FAILED if any(r.error for r in results.values()) else EXIT_OK
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed ({target.origin})")
    return EXIT_RUN_FAILED if failed else EXIT_OK


def _report(result: Any, label: str, *, update: bool) -> None:
    """One line per case: status, the case (with its own template parameters), time."""
    status = "PASS" if result.passed else ("ERROR" if result.error else "FAIL")
    if update and result.error is None and not result.passed:
        status = "UPDATE"
    print(f"{status:6} {label} ({result.elapsed_seconds:.2f} s)")
    if result.error:
        print(f"    the run failed: {result.error}")
    if result.workdir:
        print(f"    kept: {result.workdir}")
    if not update:
        for line in result.differences:
            print(f"    {line}")
