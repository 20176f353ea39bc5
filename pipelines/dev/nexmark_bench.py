"""``beamwright bench --nexmark``: each Nexmark query run both ways on the same events, Beam's own
Python implementation and the beamwright spec, results compared, times reported.

``beamwright bench --nexmark [--nexmark-events 1000000] [--nexmark-queries 0,1,2] [--json]``

Per query, each side runs in a process of its own, timed whole (interpreter start, imports,
graph construction, running, writing the results: "end to end", as a user waits for it):

- Beam: ``python -m pipelines.dev.nexmark_oracle --queries N`` (``ReadFromText`` ->
  ``ParseJsonEventFn`` -> ``queryN.load`` -> JSON lines; FnApiRunner unless the query cannot run
  there, see ``nexmark_oracle.ORACLE_RUNNERS``);
- spec: ``beamwright run docs/examples/nexmark/qN.yaml -p events=... -p out=... --quiet``.

``run_seconds`` is each side's own measure of its pipeline (the summary's elapsed time; Beam's
``run()`` to finished); the rest of ``seconds`` is start-up. CPU time is the children's user +
system time, so rows per CPU-second stay comparable when the
shared machine is busy. The events are generated once per (count, seed) in the work directory
(not timed). Each query reports whether the two results are equal (order independent, see
``nexmark_oracle.compare``) with examples of any difference; ``ratio`` is Beam's wall time over
the spec's (the target: 5 or more on 1,000,000 events).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# nexmark_oracle and nexmark (numpy) are imported where they are used: the CLI's parser imports
# this module for its argument types (query_numbers, event_count) on every start.
QUERIES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
TARGET_RATIO = 5.0
MIN_EVENTS = 1_000
"""The fewest events a run may ask for: Beam's implementation crashes on an empty file, and on
fewer events than a few generator cycles (50 events each: 1 person, 3 auctions, 46 bids) most
queries have nothing to compare."""


def query_numbers(text: str) -> list[int]:
    """``--nexmark-queries``: query numbers separated by commas (``q3`` is read as 3)."""
    numbers = []
    for part in text.split(","):
        number = part.strip().lower().removeprefix("q")
        if not number.isdigit() or int(number) not in QUERIES:
            raise argparse.ArgumentTypeError(
                f"no Nexmark query {part.strip()!r}: give query numbers "
                f"{QUERIES[0]}-{QUERIES[-1]} separated by commas, e.g. 0,1,2"
            )
        numbers.append(int(number))
    return numbers


def event_count(text: str) -> int:
    """``--nexmark-events``: a whole number, at least :data:`MIN_EVENTS`."""
    try:
        events = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if events < MIN_EVENTS:
        raise argparse.ArgumentTypeError(
            f"{events} events is too few: at least {MIN_EVENTS:,} (Beam's implementation "
            "fails on an empty file, and with fewer most queries have nothing to compare)"
        )
    return events


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], run_seconds: Callable[[str], float]) -> dict[str, Any]:
    """Run ``command``; its wall and CPU seconds, the pipeline's own run time as
    ``run_seconds(stdout)`` reads it (the rest is start-up: interpreter, imports, graph), or its
    error."""
    cpu0, began = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds, cpu = time.perf_counter() - began, _children_cpu() - cpu0
    result: dict[str, Any] = {"seconds": round(seconds, 3), "cpu_seconds": round(cpu, 3)}
    if done.returncode != 0:
        # a process the kernel killed (out of memory) leaves no output: say how it ended
        result["error"] = (done.stderr or done.stdout)[-3000:] or f"exit code {done.returncode}"
        return result
    try:
        result["run_seconds"] = round(run_seconds(done.stdout), 3)
    except (OSError, ValueError, LookupError) as exc:  # exited 0 without its report
        result["error"] = f"exited 0 but its report is missing or unreadable ({exc})"
    return result


def _rates(side: dict[str, Any], events: int) -> dict[str, Any]:
    side["events_per_second"] = round(events / side["seconds"])
    side["events_per_cpu_second"] = (
        round(events / side["cpu_seconds"]) if side["cpu_seconds"] else None
    )
    return side


def run_query(query: int, events_file: Path, events: int, workdir: Path) -> dict[str, Any]:
    """Both sides of one query on the same file, compared."""
    from pipelines.dev.nexmark_oracle import (
        UNRUNNABLE,
        beam_results,
        compare,
        oracle_runner,
        spec_path,
        spec_results,
    )

    out = workdir / f"q{query}-{time.time_ns()}"
    report: dict[str, Any] = {"query": query, "events": events}
    if not spec_path(query).exists():
        report["error"] = f"no spec {spec_path(query).name} yet"
        return report
    summary = out / f"summary-q{query}.json"
    spec = _timed(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            str(spec_path(query)),
            "-p",
            f"events={events_file}",
            "-p",
            f"out={out / f'spec-q{query}'}",
            "--quiet",
            "--summary-json",
            str(summary),
        ],
        lambda _stdout: json.loads(summary.read_text())["elapsed_seconds"],
    )
    report["spec"] = _rates(spec, events)
    if query in UNRUNNABLE:
        report["beam"] = {"error": UNRUNNABLE[query]}
        return report
    beam = _timed(
        [
            sys.executable,
            "-m",
            "pipelines.dev.nexmark_oracle",
            "--events",
            str(events_file),
            "--out",
            str(out),
            "--queries",
            str(query),
        ],
        lambda stdout: json.loads(stdout.strip().splitlines()[-1])["seconds"],
    )
    beam["runner"] = oracle_runner(query)
    report["beam"] = _rates(beam, events)
    if "error" in spec or "error" in beam:
        return report
    missing = [
        f"{side} wrote no results ({path} is missing)"
        for side, path in (("Beam", out / f"beam-q{query}"), ("spec", out / f"spec-q{query}"))
        if not path.exists()
    ]
    if missing:
        report["error"] = "; ".join(missing)
        return report
    report["ratio"] = round(beam["seconds"] / spec["seconds"], 2)
    report["cpu_ratio"] = round(beam["cpu_seconds"] / spec["cpu_seconds"], 2)
    comparison = compare(
        query, beam_results(out, query), spec_results(out / f"spec-q{query}", query)
    )
    report.update(comparison.as_dict())
    return report


def nexmark_bench(events: int, queries: list[int], workdir: Path, seed: int = 0) -> dict[str, Any]:
    """Every query both ways on ``events`` generated events in ``workdir``; the report."""
    from pipelines.dev.bench import environment  # here: the CLI's parser imports this module
    from pipelines.dev.nexmark import NexmarkConfig, write_file

    events_file = workdir / f"events-{events}-seed{seed}.jsonl"
    if not events_file.exists():
        write_file(NexmarkConfig(events=events, seed=seed), events_file)
    env = environment()
    results = []
    for query in queries:
        print(f"nexmark q{query} ...", file=sys.stderr)
        results.append(run_query(query, events_file, events, workdir))
    return {
        "events": events,
        "seed": seed,
        "events_file": str(events_file),
        "target_ratio": TARGET_RATIO,
        "queries": results,
        "environment": env,
        "load_average_after": environment()["load_average"],
    }


def failure(result: dict[str, Any]) -> str | None:
    """Why one query's result is a failure, else None: either side crashed or wrote nothing,
    or the results differ. A side Beam cannot run at all (``UNRUNNABLE``) is not a failure."""
    from pipelines.dev.nexmark_oracle import UNRUNNABLE

    if result.get("error"):
        return result["error"]
    spec, beam = result.get("spec", {}), result.get("beam", {})
    if spec.get("error"):
        return f"the spec failed: {spec['error']}"
    if result["query"] in UNRUNNABLE:
        return None
    if beam.get("error"):
        return f"Beam failed: {beam['error']}"
    if result.get("equal") is not True:
        return "the results differ"
    return None


def _side(name: str, side: dict[str, Any]) -> str:
    if "events_per_second" not in side:
        return f"{name} -"
    return (
        f"{name} {side['seconds']} s ({side.get('run_seconds', '-')} s running), "
        f"{side['cpu_seconds']} CPU-s, {side['events_per_second']:,} events/s, "
        f"{side['events_per_cpu_second'] or 0:,} events/CPU-s"
    )


def print_text(report: dict[str, Any]) -> None:
    """The report for a reader: per query the verdict, both sides' wall and CPU seconds and
    events per second and per CPU-second, the ratios, then any note or error in full."""
    for r in report["queries"]:
        beam, spec = r.get("beam", {}), r.get("spec", {})
        print(
            f"q{r['query']:<3} equal={r.get('equal')!s:<5} {_side('beam', beam)}; "
            f"{_side('spec', spec)}; ratio {r.get('ratio', '-')} wall, "
            f"{r.get('cpu_ratio', '-')} CPU"
        )
        for note in (r.get("error"), spec.get("error"), beam.get("error")):
            if note:
                print("     " + note.rstrip().replace("\n", "\n     "))
    print(
        f"load average: {report['environment']['load_average']} -> {report['load_average_after']}"
    )


def main(args: argparse.Namespace) -> int:
    """``bench --nexmark``: 0 when every query ran on both sides with equal results (or Beam
    cannot run it at all), else 1 with each failure on stderr."""
    from pipelines.dev.workdir import BenchWorkdir

    queries = args.nexmark_queries or list(QUERIES)
    with BenchWorkdir(args.workdir, "beamwright-nexmark-") as work:
        report = nexmark_bench(args.nexmark_events, queries, work.path)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_text(report)
        failed = {r["query"]: failure(r) for r in report["queries"]}
        failed = {query: why for query, why in failed.items() if why}
        for query, why in failed.items():  # the whole error is in the report above
            last = [line for line in why.splitlines() if line.strip()][-1].strip()
            print(f"beamwright bench --nexmark: q{query} failed: {last}", file=sys.stderr)
        work.failed = bool(failed)
    return 1 if failed else 0
