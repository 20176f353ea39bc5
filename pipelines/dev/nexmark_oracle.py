"""Beam's own Python Nexmark queries as the oracle, and the comparison of their results with
the beamwright specs' (``docs/examples/nexmark/q*.yaml``).

``python -m pipelines.dev.nexmark_oracle --events events.jsonl --out DIR --queries 1,2``

The oracle reads the events exactly as Beam's ``nexmark_launcher`` does in batch mode
(``ReadFromText`` -> ``ParseJsonEventFn`` -> event time = ``dateTime``), applies
``apache_beam.testing.benchmarks.nexmark.queries.queryN.load`` with the launcher's query
arguments, and writes each result as one JSON line (``model_to_json`` for Beam's model objects,
``json.dumps`` for its dicts) on the FnApiRunner, pinned. Several queries can share one pipeline
(one read of the events, each query's transforms under its own label): the tests do that.

Both sides' rows are then normalised to one canonical form per query (field names mapped,
floats to 12 significant digits and whole ones to integers, nulls dropped) and compared as multisets: order never matters,
duplicates do.
"""

from __future__ import annotations

import argparse
import collections
import functools
import glob
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "nexmark"

QUERY_ARGS = {
    # nexmark_launcher.NexmarkLauncher.run's query_args, unchanged
    "auction_skip": 123,
    "window_size_sec": 10,
    "window_period_sec": 5,
    "fanout": 5,
    "num_max_workers": 5,
    "max_log_events": 100000,
    "occasional_delay_sec": 3,
    "max_auction_waiting_time": 600,
}

# Beam's model attributes -> the JSON field names of the events (and of the specs' rows)
_EVENT_FIELDS = {
    "email_address": "emailAddress",
    "credit_card": "creditCard",
    "date_time": "dateTime",
    "item_name": "itemName",
    "initial_bid": "initialBid",
}


def _canonical(value: Any) -> Any:
    if isinstance(value, float):
        value = float(f"{value:.12g}")
        return int(value) if value.is_integer() else value  # 2.0 and 2 are one number
    if isinstance(value, dict):
        return {_EVENT_FIELDS.get(k, k): _canonical(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _flat_auction_bid(row: dict[str, Any]) -> dict[str, Any]:
    """Beam's ``AuctionBid`` ({auction: {...}, bid: {...}}) as the specs' one flat row: the
    auction's fields, then the bid's prefixed ``bid_`` (the join's prefix for its right side)."""
    if set(row) != {"auction", "bid"}:
        return row
    bid = _canonical(row["bid"])
    return {**_canonical(row["auction"]), **{f"bid_{k}": v for k, v in bid.items()}}


def canonical_rows(rows: Iterable[dict[str, Any]]) -> collections.Counter[str]:
    """Rows as a multiset of canonical JSON texts: what two results must share to be equal."""
    return collections.Counter(
        json.dumps(_canonical(_flat_auction_bid(r)), sort_keys=True) for r in rows
    )


@dataclass(frozen=True)
class Comparison:
    """How two results differ: rows only one side has (a few of each, to show)."""

    query: int
    beam_rows: int
    spec_rows: int
    only_beam: list[str]
    only_spec: list[str]
    missing: int
    extra: int

    @property
    def equal(self) -> bool:
        return not self.missing and not self.extra

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "equal": self.equal,
            "beam_rows": self.beam_rows,
            "spec_rows": self.spec_rows,
            "rows_only_in_beam": self.missing,
            "rows_only_in_spec": self.extra,
            "examples_only_in_beam": self.only_beam,
            "examples_only_in_spec": self.only_spec,
        }


def compare(
    query: int, beam: Iterable[dict[str, Any]], spec: Iterable[dict[str, Any]]
) -> Comparison:
    """Compare Beam's rows with the spec's, order independent."""
    left, right = canonical_rows(beam), canonical_rows(spec)
    only_left, only_right = left - right, right - left
    return Comparison(
        query,
        sum(left.values()),
        sum(right.values()),
        sorted(only_left)[:5],
        sorted(only_right)[:5],
        sum(only_left.values()),
        sum(only_right.values()),
    )


def read_jsonl(pattern: str) -> Iterator[dict[str, Any]]:
    """Every JSON line of every file matching ``pattern`` (sorted; hidden files skipped)."""
    for path in sorted(glob.glob(pattern, recursive=True)):
        if Path(path).name.startswith((".", "_")) or Path(path).is_dir():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def spec_results(out: str | Path) -> Iterator[dict[str, Any]]:
    """The rows a query spec run wrote under ``out`` (its ``results`` sink directory)."""
    return read_jsonl(str(Path(out) / "results" / "**" / "*.jsonl"))


def beam_results(out: str | Path, query: int) -> Iterator[dict[str, Any]]:
    return read_jsonl(str(Path(out) / f"beam-q{query}" / "*"))


def _to_json(element: Any) -> str:
    if isinstance(element, dict):
        return json.dumps(element)
    return repr(element)  # Beam's models print as model_to_json


ORACLE_RUNNERS = {
    # Beam's WinningBids windows (AuctionOrBidWindow, a custom merging WindowFn) cannot cross
    # the FnApiRunner: its window coder is handed Beam's _OpaqueWindow ("Cannot convert
    # _OpaqueWindow to _IntervalWindowBase"); Beam's in-process BundleBasedDirectRunner runs them.
    4: "BundleBasedDirectRunner",
    6: "BundleBasedDirectRunner",
    9: "BundleBasedDirectRunner",
}
"""Queries whose oracle cannot run on the FnApiRunner, and the runner it runs on instead."""

UNRUNNABLE = {
    12: "Beam's query 12 triggers on processing time in the global window, which its batch "
    "runners cannot do ('currently not supported in batch' in query12.py): the FnApiRunner and "
    "the BundleBasedDirectRunner both fail with \"'NoneType' object has no attribute 'time'\"",
}
"""Queries Beam's Python implementation cannot run on a bounded file at all, and why."""


def oracle_runner(query: int) -> str:
    return ORACLE_RUNNERS.get(query, "FnApiRunner")


@functools.cache
def _fix_query6() -> None:
    """Beam's query 6 ``MovingMeanSellingPriceFn`` sorts by ``-bid.date_time``, and a Beam
    ``Timestamp`` has no unary minus (TypeError on every runner). The fix: the same order
    (newest first, then highest price) by the timestamp's micros; nothing else changes. Applied
    once per process to Beam's module, whose ``load`` looks the class up when it is called."""
    from apache_beam.testing.benchmarks.nexmark.queries import query6

    class MovingMeanSellingPriceFn(query6.MovingMeanSellingPriceFn):
        def add_input(self, accumulator, element):  # noqa: ANN001, ANN201 - Beam's signature
            accumulator.append(element)
            accumulator.sort(key=lambda bid: (-bid.date_time.micros, -bid.price))
            del accumulator[self.max_num_bids :]
            return accumulator

    query6.MovingMeanSellingPriceFn = MovingMeanSellingPriceFn


def _query_transform(number: int) -> Callable[[Any], Any]:
    import importlib

    module = importlib.import_module(
        f"apache_beam.testing.benchmarks.nexmark.queries.query{number}"
    )
    if number == 6:
        _fix_query6()
    return lambda events: module.load(events, dict(QUERY_ARGS), None)


def run_beam(events: str | Path, out: str | Path, queries: Iterable[int]) -> float:
    """Run Beam's queries on the events file, one pipeline per oracle runner; seconds the runs
    took (from ``run()`` to finished, building excluded). Results: ``out/beam-qN/part-*``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions
    from apache_beam.testing.benchmarks.nexmark import nexmark_util
    from apache_beam.transforms import window

    by_runner: dict[str, list[int]] = collections.defaultdict(list)
    for number in queries:
        if number in UNRUNNABLE:
            raise ValueError(f"query {number}: {UNRUNNABLE[number]}")
        by_runner[oracle_runner(number)].append(number)
    nexmark_util.setup_coder()
    seconds = 0.0
    for runner, numbers in by_runner.items():
        options = PipelineOptions(flags=[], runner=runner, direct_num_workers=1)
        options.view_as(TypeOptions).allow_unsafe_triggers = True  # as nexmark_launcher sets it
        pipeline = beam.Pipeline(options=options)
        parsed = (
            pipeline
            | "reading_from_file" >> beam.io.ReadFromText(str(events))
            | "deserialization" >> beam.ParDo(nexmark_util.ParseJsonEventFn())
            | "timestamping" >> beam.Map(lambda e: window.TimestampedValue(e, e.date_time))
        )
        for number in numbers:
            load = _query_transform(number)
            (
                parsed
                | f"query{number}" >> beam.ptransform_fn(lambda pcoll, load=load: load(pcoll))()
                | f"query{number}_json" >> beam.Map(_to_json)
                | f"query{number}_write"
                >> beam.io.WriteToText(str(Path(out) / f"beam-q{number}" / "part"))
            )
        began = time.perf_counter()
        pipeline.run().wait_until_finish()
        seconds += time.perf_counter() - began
    return seconds


def spec_path(query: int) -> Path:
    return EXAMPLES / f"q{query}.yaml"


def run_spec_query(query: int, events: str | Path, out: str | Path) -> Any:
    """Run the query's spec on the events through ``pipelines.run`` (the path ``beamwright run``
    takes); its summary."""
    from pipelines.loading import load_spec
    from pipelines.run import run_spec

    spec = load_spec(
        spec_path(query), {"events": str(events), "out": str(Path(out) / f"spec-q{query}")}
    )
    return run_spec(spec, spec_path=str(spec_path(query)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("nexmark_oracle", description="Beam's Nexmark queries on a file")
    p.add_argument("--events", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--queries", default="0,1,2")
    args = p.parse_args(argv)
    queries = [int(q) for q in args.queries.split(",")]
    seconds = run_beam(args.events, args.out, queries)
    print(json.dumps({"queries": queries, "seconds": round(seconds, 3)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
