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
import datetime as _dt
import functools
import glob
import json
import re
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
    """How two results differ: rows only one side has (a few of each, to show), and for q10
    what is wrong with the files' layout."""

    query: int
    beam_rows: int
    spec_rows: int
    only_beam: list[str]
    only_spec: list[str]
    missing: int
    extra: int
    problems: tuple[str, ...] = ()

    @property
    def equal(self) -> bool:
        return not self.missing and not self.extra and not self.problems

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
            **({"problems": list(self.problems)} if self.problems else {}),
        }


def compare(
    query: int, beam: Iterable[dict[str, Any]], spec: Iterable[dict[str, Any]]
) -> Comparison:
    """Compare Beam's rows with the spec's, order independent. q10's rows are written events
    (:func:`spec_written_events`, :class:`_WrittenEvents`): per window the multiset of events,
    plus each side's files per window and the spec's file names (:func:`_q10_layout`)."""
    problems: list[str] = []
    if query == 10:
        beam, spec = list(beam), list(spec)
        problems = _q10_layout(beam, spec)
        left, right = _windowed_events(beam), _windowed_events(spec)
    else:
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
        tuple(problems),
    )


def _windowed_events(rows: Iterable[dict[str, Any]]) -> collections.Counter[str]:
    """Written events as a multiset of ``<window end µs> <canonical event>``."""
    return collections.Counter(
        f"{r['window_end']} {json.dumps(_canonical(r['event']), sort_keys=True)}" for r in rows
    )


# the spec's q10 files: <start>_<end>/[pane-NNNNN-]part-NNNNN-of-00025.jsonl (pane-: unbounded)
_Q10_FILE = re.compile(r"(?:pane-(\d{5})-)?part-(\d{5})-of-(\d{5})\.jsonl")
_STAMP = r"(\d{8}T\d{6}(?:\.\d{6})?Z)"
_Q10_WINDOW = re.compile(f"{_STAMP}_{_STAMP}")


def _micros(stamp: str) -> int:
    moment = _dt.datetime.strptime(
        stamp, "%Y%m%dT%H%M%S.%fZ" if "." in stamp else "%Y%m%dT%H%M%SZ"
    ).replace(tzinfo=_dt.timezone.utc)
    return (moment - _EPOCH) // _dt.timedelta(microseconds=1)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _q10_layout(beam: list[dict[str, Any]], spec: list[dict[str, Any]]) -> list[str]:
    """What Beam's file naming promises, checked on both sides: per window at most 25 shards
    (``shard-NNNNN-of-00025`` / ``part-NNNNN-of-00025``), windows of ``window_size_sec``; and
    Beam's panes, one on-time pane per window in batch, as the spec's bounded run writes."""
    problems = []
    size = QUERY_ARGS["window_size_sec"] * 1_000_000
    for side, rows in (("beam", beam), ("spec", spec)):
        shards: dict[int, set[str]] = collections.defaultdict(set)
        for r in rows:
            shards[r["window_end"]].add(r["shard"])
        crowded = {w: len(s) for w, s in shards.items() if len(s) > Q10_SHARDS}
        if crowded:
            problems.append(f"{side}: more than {Q10_SHARDS} shards in windows {crowded}")
    panes = {(r["pane_index"], r["timing"]) for r in beam}
    if panes - {(0, "ON_TIME")}:
        problems.append(f"beam: panes {sorted(panes)}, the spec writes one on-time pane")
    for r in spec:
        file = _Q10_FILE.fullmatch(r["file"])
        window = _Q10_WINDOW.fullmatch(r["window"])
        if not file or int(file[3]) != Q10_SHARDS or int(file[2]) >= Q10_SHARDS:
            problems.append(f"spec: {r['window']}/{r['file']} is not part-NNNNN-of-00025")
        elif not window or _micros(window[2]) - _micros(window[1]) != size:
            problems.append(f"spec: directory {r['window']} is not a window of {size} µs")
        else:
            continue
        break  # one example is enough
    return problems


def read_jsonl(pattern: str) -> Iterator[dict[str, Any]]:
    """Every JSON line of every file matching ``pattern`` (sorted; hidden files skipped)."""
    for path in sorted(glob.glob(pattern, recursive=True)):
        if Path(path).name.startswith((".", "_")) or Path(path).is_dir():
            continue
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def spec_results(out: str | Path, query: int | None = None) -> Iterator[dict[str, Any]]:
    """The rows a query spec run wrote under ``out`` (its ``results`` sink directory); for
    q10 the written events with their window and file (:func:`spec_written_events`)."""
    if query == 10:
        return spec_written_events(out)
    return read_jsonl(str(Path(out) / "results" / "**" / "*.jsonl"))


def spec_written_events(out: str | Path) -> Iterator[dict[str, Any]]:
    """q10's events as the spec wrote them, one per row of every file of every window
    directory: ``{window_end, window, file, shard, event}`` (compared with
    :class:`_WrittenEvents`)."""
    for path in sorted((Path(out) / "results").glob("*/*.jsonl")):
        window, file = path.parent.name, path.name
        named = _Q10_WINDOW.fullmatch(window)
        end = _micros(named[2]) if named else window
        shard = _Q10_FILE.fullmatch(file)
        for event in read_jsonl(str(path)):
            yield {
                "window_end": end,
                "window": window,
                "file": file,
                "shard": shard[2] if shard else file,
                "event": event,
            }


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


Q10_SHARDS = 25
"""Beam's q10 shards: ``NUM_SHARD_PER_WORKER`` (5) x ``max_num_workers`` (5)."""


class _WrittenEvents:
    """What reaches Beam's ``query10_write_event``, one JSON line per event: the window's end
    (µs) and ``max_timestamp``, the pane's index and timing, the shard, and the event. Beam's
    ``WriteEventDoFn`` itself writes nothing (its GCS writes are ``pass`` stubs) and yields only
    the file name, so the elements of the GroupByKey feeding it are the oracle."""

    @staticmethod
    def process(element: Any, window: Any, pane: Any) -> Iterator[dict[str, Any]]:
        from apache_beam.utils.windowed_value import PaneInfoTiming

        shard, events = element
        for event in events:
            yield {
                "window_end": window.end.micros,
                "max_timestamp": str(window.max_timestamp()),
                "pane_index": pane.index,
                "timing": PaneInfoTiming.to_string(pane.timing),
                "shard": shard,
                "event": json.loads(repr(event)),
            }


def _load_query10(events: Any, module: Any) -> Any:
    """Beam's query 10 applied unmodified, and a branch on the output of its ``query10_gbk``
    (found in the graph by label) recording what its ``query10_write_event`` receives."""
    import apache_beam as beam

    module.load(events, dict(QUERY_ARGS), events.pipeline.options)
    found: list[Any] = []

    class Find(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node: Any) -> None:
            self.visit_transform(node)

        def visit_transform(self, node: Any) -> None:
            if node.full_label.endswith("query10_gbk"):
                found.append(node.outputs[None])

    events.pipeline.visit(Find())
    (grouped,) = found

    class Capture(beam.DoFn):
        def process(self, element, window=beam.DoFn.WindowParam, pane=beam.DoFn.PaneInfoParam):
            yield from _WrittenEvents.process(element, window, pane)

    return grouped | "query10_written_events" >> beam.ParDo(Capture())


def _query_transform(number: int) -> Callable[[Any], Any]:
    import importlib

    module = importlib.import_module(
        f"apache_beam.testing.benchmarks.nexmark.queries.query{number}"
    )
    if number == 6:
        _fix_query6()
    if number == 10:
        return lambda events: _load_query10(events, module)
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
