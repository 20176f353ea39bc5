"""``beamwright test --update``: record what the cases produced as their expectations (like
Beam YAML's ``fix_tests``).

Only expectations a case already has are rewritten, from the run's actual outputs: the rows of
each sink it lists (projected on its ``fields`` when given), its dead letters (as
``{step, rule, count}``, with the rows' listed fields for entries that gave rows) and the
counts it names in ``summary``. Inputs and everything else stay as written. To start a case,
list a sink with no rows (``outputs: {warehouse: {}}``) and run ``--update``.

The file is rewritten without a round-trip YAML library (none is installed): only the text of
the top-level ``tests:`` block is replaced by a fresh dump of it, so the rest of the file
(other keys, their comments and layout) is kept byte for byte; comments *inside* the tests
block are not kept. A JSON spec is rewritten whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.errors import BeamwrightError
from pipelines.loading import read_spec_file
from pipelines.spec_diff import canonical, grouped_dead_letters, plain

_TOP_LEVEL_TESTS = re.compile(r"^tests\s*:", re.MULTILINE)


class UpdateError(BeamwrightError, ValueError):
    """The tests file cannot be rewritten (no top-level tests block found)."""


def update_file(path: Path, results: Mapping[str, Any]) -> list[str]:
    """Rewrite the expectations of the cases in ``results`` (name -> CaseResult with
    ``actual``) in ``path``; returns the names of the cases updated."""
    data = read_spec_file(path)
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise UpdateError("has no top-level 'tests:' list", where=str(path))
    updated = []
    for case in tests:
        result = results.get(case.get("name")) if isinstance(case, dict) else None
        if result is None or result.actual is None:
            continue
        update_case(case, result.actual)
        updated.append(case["name"])
    if path.suffix == ".json":
        data["tests"] = tests
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
        path.write_text(replace_tests_block(text, tests, where=str(path)), encoding="utf-8")
    return updated


def update_case(case: dict[str, Any], actual: Any) -> None:
    """Set the case's listed expectations (raw YAML data) to what ``actual`` holds."""
    for name, entry in (case.get("outputs") or {}).items():
        entry = entry if isinstance(entry, dict) else {}
        case["outputs"][name] = entry
        entry["rows"] = _record(actual.sinks.get(name, []), entry.get("fields"))
    if "dead_letters" in case:
        case["dead_letters"] = _dead_letters(case.get("dead_letters") or [], actual.dead_letters)
    for name, entry in (case.get("summary") or {}).items():
        node = actual.nodes.get(name)
        if node is None:
            continue
        entry = entry if isinstance(entry, dict) else {}
        case["summary"][name] = entry
        for key in list(entry) or ["rows_in", "rows_out", "rows_dead_lettered"]:
            if key == "rules":
                entry["rules"] = {k: v for k, v in sorted(node.rules.items()) if v}
            elif hasattr(node, key):
                entry[key] = getattr(node, key)


def _record(rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None) -> list[dict]:
    """Rows as recorded: only ``fields`` when given, nulls left out (absent means null),
    sorted so that re-recording an unchanged output changes nothing in the file."""
    out = []
    for row in rows:
        keys = fields if fields is not None else list(row)
        out.append({k: plain(row.get(k)) for k in keys if row.get(k) is not None})
    return sorted(out, key=lambda r: repr(canonical(r)))


def _dead_letters(old: Sequence[Any], letters: Sequence[Mapping[str, Any]]) -> list[dict]:
    with_rows = {
        (e.get("step"), e.get("rule")): e["rows"]
        for e in old
        if isinstance(e, dict) and isinstance(e.get("rows"), list)
    }
    out = []
    for entry in grouped_dead_letters(letters):
        rows = with_rows.get((entry["step"], entry["rule"]), with_rows.get((None, entry["rule"])))
        if rows is not None:
            fields = list(dict.fromkeys(k for r in rows if isinstance(r, dict) for k in r))
            mine = [
                letter["payload"]
                for letter in letters
                if (letter["step"], letter["rule"]) == (entry["step"], entry["rule"])
            ]
            entry["rows"] = _record(mine, fields or None)
        out.append(entry)
    return out


def replace_tests_block(text: str, tests: list[Any], *, where: str) -> str:
    """``text`` with its top-level ``tests:`` block replaced by a dump of ``tests``."""
    import yaml

    match = _TOP_LEVEL_TESTS.search(text)
    if match is None:
        raise UpdateError(
            "has no top-level 'tests:' block to rewrite",
            where=where,
            hint="add 'tests:' with the cases at the top level of the file",
        )
    lines = text[match.start() :].splitlines(keepends=True)
    end = 1
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() and not line[0].isspace() and not line.startswith(("-", "#")):
            break
        end = i + 1
    while end > 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1  # blank lines and comments before the next key belong to it
    block = yaml.safe_dump(
        {"tests": tests}, sort_keys=False, allow_unicode=True, default_flow_style=None, width=4096
    )
    rest = "".join(lines[end:])
    return text[: match.start()] + block + rest
