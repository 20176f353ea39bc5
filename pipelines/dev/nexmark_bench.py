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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.dev.bench import environment
from pipelines.dev.nexmark import NexmarkConfig, write_file
from pipelines.dev.nexmark_oracle import (
    UNRUNNABLE,
    beam_results,
    compare,
    oracle_runner,
    spec_path,
    spec_results,
)

QUERIES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)
TARGET_RATIO = 5.0


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
        result["error"] = (done.stderr or done.stdout)[-1500:] or f"exit code {done.returncode}"
    else:
        result["run_seconds"] = round(run_seconds(done.stdout), 3)
    return result


def _rates(side: dict[str, Any], events: int) -> dict[str, Any]:
    side["events_per_second"] = round(events / side["seconds"])
    side["events_per_cpu_second"] = (
        round(events / side["cpu_seconds"]) if side["cpu_seconds"] else None
    )
    return side


def run_query(query: int, events_file: Path, events: int, workdir: Path) -> dict[str, Any]:
    """Both sides of one query on the same file, compared."""
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
    report["ratio"] = round(beam["seconds"] / spec["seconds"], 2)
    report["cpu_ratio"] = round(beam["cpu_seconds"] / spec["cpu_seconds"], 2)
    comparison = compare(
        query, beam_results(out, query), spec_results(out / f"spec-q{query}", query)
    )
    report.update(comparison.as_dict())
    return report


def nexmark_bench(
    events: int, queries: list[int], seed: int = 0, workdir: Path | None = None
) -> dict[str, Any]:
    """Every query both ways on ``events`` generated events; the report."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="beamwright-nexmark-"))
    workdir.mkdir(parents=True, exist_ok=True)
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


def main(args: argparse.Namespace) -> int:
    queries = (
        [int(q) for q in args.nexmark_queries.split(",")] if args.nexmark_queries else list(QUERIES)
    )
    unknown = sorted(set(queries) - set(QUERIES))
    if unknown:
        print(
            f"beamwright bench --nexmark: no query {unknown}; queries: {QUERIES}", file=sys.stderr
        )
        return 2
    workdir = Path(args.workdir) if args.workdir else None
    report = nexmark_bench(args.nexmark_events, queries, workdir=workdir)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for r in report["queries"]:
            beam, spec = r.get("beam", {}), r.get("spec", {})
            print(
                f"q{r['query']:<3} equal={r.get('equal')!s:<5} "
                f"beam {beam.get('seconds', '-')} s  spec {spec.get('seconds', '-')} s  "
                f"ratio {r.get('ratio', '-')}  {r.get('error') or beam.get('error', '')[:80]}"
            )
        print(
            f"load average: {report['environment']['load_average']} -> {report['load_average_after']}"
        )
    failed = [r for r in report["queries"] if r.get("equal") is False]
    return 1 if failed else 0
