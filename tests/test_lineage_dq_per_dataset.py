"""Lineage data-quality assertions belong to the input dataset whose rows failed them.

Two inputs feed one validate step; their bad rows fail different rules. Each input dataset's
dataQualityAssertions must list only its own failures, with counts equal to the dead letters
that came from it (issue 8, item 14: every input used to get the step's run-wide counts).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from connectors.metrics import parse_rule_counter, rule_counter
from lineage.emitter import EVENT_OBSERVERS
from pipelines.loading import spec_from_data
from pipelines.run import RunFailed, run_spec


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _run(tmp_path: Path) -> tuple[str, str, list[dict]]:
    good = {"status": "paid", "amount": 5}
    east = _write(
        tmp_path / "east.jsonl",
        [good, {"status": "lost", "amount": 1}, {"status": "void", "amount": 2}, good],
    )
    west = _write(
        tmp_path / "west.jsonl",
        [good, {"status": "paid", "amount": -3}, good, {"status": "paid", "amount": 12}],
    )
    spec = spec_from_data(
        {
            "name": "dq_per_dataset",
            "sources": [
                {"name": "east", "type": "file", "path": east},
                {"name": "west", "type": "file", "path": west},
            ],
            "steps": [
                {
                    "name": "check",
                    "type": "validate",
                    "fields": {"amount": {"type": "float64", "required": True}},
                    "rules": [
                        {"rule": "in_set", "field": "status", "values": ["paid"]},
                        {"rule": "between", "field": "amount", "min": 0, "max": 10},
                        {"rule": "max", "field": "amount", "max": 11, "severity": "warning"},
                    ],
                }
            ],
            "sinks": [
                {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}
            ],
            "dead_letter": {"path": str(tmp_path / "dead")},
            "run": {"error_threshold": 1.0},
            "lineage": {"event_log": str(tmp_path / "events.jsonl")},
        }
    )
    events: list[dict] = []
    EVENT_OBSERVERS.append(events.append)
    try:
        try:
            run_spec(spec)
        except RunFailed as exc:  # pragma: no cover - shows the reason if the run fails
            raise AssertionError(exc.summary.error) from exc
    finally:
        EVENT_OBSERVERS.remove(events.append)
    return east, west, events


def _dead_letter_counts(folder: Path) -> Counter[tuple[str, str]]:
    counts: Counter[tuple[str, str]] = Counter()
    for path in folder.glob("**/*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            for rule in record["rule"].split(","):
                counts[(record["source"], rule)] += 1
    return counts


def test_each_input_dataset_gets_only_its_own_failures(tmp_path):
    east, west, events = _run(tmp_path)
    complete = next(e for e in events if e["eventType"] == "COMPLETE")
    by_name = {d["name"]: d for d in complete["inputs"]}
    assert set(by_name) == {east, west}

    def failures(path: str) -> dict[str, int]:
        facet = by_name[path]["inputFacets"]["dataQualityAssertions"]
        return {
            a["name"]: int(a["actual"].split()[0]) for a in facet["assertions"] if not a["success"]
        }

    dead = _dead_letter_counts(tmp_path / "dead")
    assert failures(east) == {"in_set:status": 2}
    # the warning rule rejects nothing; it is attributed to the rows' own file all the same
    assert failures(west) == {"between:amount": 2, "max:amount": 1}
    for path in (east, west):
        own_dead = {rule: n for (source, rule), n in dead.items() if source == path}
        rejecting = {k: v for k, v in failures(path).items() if k != "max:amount"}
        assert rejecting == own_dead
    # every assertion of the step is still listed for both datasets, passing where it passed
    names = {a["name"] for a in by_name[east]["inputFacets"]["dataQualityAssertions"]["assertions"]}
    assert {"in_set:status", "between:amount", "max:amount", "type:amount"} <= names


def test_rule_counter_names_round_trip_odd_ids():
    for rule, source in [("in_set:status", "/d/a@b.jsonl"), ("50%@x", None), ("a%40b", "t/0")]:
        assert parse_rule_counter(rule_counter(rule, source)) == (rule, source)
    assert parse_rule_counter("rows_in") is None


def test_follow_cycles_add_up_per_source_rule_failures():
    """--follow totals keep each input's own failures across cycles (lineage reads them)."""
    from pipelines.summary import NodeCounts

    total = NodeCounts(
        "step", "check", 10, 8, 2, rules={"min:a": 2}, rules_by_source={"f1": {"min:a": 2}}
    )
    cycle = NodeCounts(
        "step", "check", 5, 4, 1, rules={"min:a": 1}, rules_by_source={"f2": {"min:a": 1}}
    )
    total.add(cycle)
    total.add(
        NodeCounts(
            "step", "check", 1, 0, 1, rules={"min:a": 1}, rules_by_source={"f1": {"min:a": 1}}
        )
    )
    assert (total.rows_in, total.rows_out, total.rows_dead_lettered) == (16, 12, 4)
    assert total.rules == {"min:a": 4}
    assert total.rules_by_source == {"f1": {"min:a": 3}, "f2": {"min:a": 1}}
