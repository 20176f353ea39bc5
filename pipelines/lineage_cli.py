"""``beamwright lineage report | access | graph | generate-history``: reports over OpenLineage
event logs, and a month of example events to try them on.

``pipelines/cli.py`` registers these with :func:`add_parser`. Only the standard library is
imported here; each command imports ``lineage.reports`` when it runs, so ``beamwright --help``
stays fast.

Events come from log files (``--events``, repeatable: JSONL as the ``file`` transport writes
it, JSON documents, or directories of them) or from a Marquez-compatible API (``--marquez``;
an API key, if the server needs one, is read from ``MARQUEZ_API_KEY`` rather than a flag, so it
never shows in a process list or shell history).

Exit codes: 0 done, 1 ``report --fail-on`` found findings at or above that severity,
2 the events could not be read or the arguments are invalid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK

EXIT_FINDINGS = 1  # a report found problems (compliance findings, access anomalies)


def _time(text: str) -> dt.datetime:
    from lineage.reports.events import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--events",
        action="append",
        metavar="PATH",
        help="event log: a JSONL/JSON file or a directory of them (repeatable)",
    )
    source.add_argument(
        "--marquez",
        metavar="URL",
        help="Marquez-compatible API base URL, e.g. http://localhost:5000 "
        "(API key from MARQUEZ_API_KEY)",
    )
    parser.add_argument("--namespace", help="only jobs in this namespace")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Registers ``lineage`` and its three commands on the CLI's subparsers."""
    lineage = subparsers.add_parser(
        "lineage",
        help="compliance report, access analysis and lineage graph from OpenLineage events",
        description="Reports over OpenLineage event logs (files or a Marquez API).",
    )
    commands = lineage.add_subparsers(dest="lineage_command", required=True)

    report = commands.add_parser(
        "report",
        help="compliance report (HTML + Markdown): classification, PII flows, quality, findings",
    )
    _source_arguments(report)
    report.add_argument("--since", type=_time, metavar="ISO", help="only runs started from then")
    report.add_argument("--until", type=_time, metavar="ISO", help="only runs started before")
    report.add_argument("--out", required=True, metavar="DIR", help="where to write the report")
    report.add_argument(
        "--fail-on",
        choices=["high", "medium", "low"],
        help="exit 1 when a finding of this severity or worse is found (for CI)",
    )
    report.set_defaults(func=cmd_report)

    access = commands.add_parser(
        "access",
        help="who read and wrote what, per principal, over a window (default the last 30 days); "
        "anomalies with SOC 2 / ISO 27001 controls",
    )
    _source_arguments(access)
    access.add_argument(
        "--from", dest="start", type=_time, metavar="ISO", help="default: 30 days before --to"
    )
    access.add_argument(
        "--to", dest="end", type=_time, metavar="ISO", help="exclusive; default: now"
    )
    access.add_argument(
        "--baseline-days",
        type=int,
        default=14,
        metavar="N",
        help="days before each day its values are compared with (default 14, at least 7)",
    )
    access.add_argument("--json", action="store_true", help="print JSON instead of a table")
    access.add_argument(
        "--fail-on-anomaly", action="store_true", help="exit 1 when an anomaly is found (for CI)"
    )
    access.set_defaults(func=cmd_access)

    history = commands.add_parser(
        "generate-history",
        help="write a month of example OpenLineage events (5 principals, one anomalous)",
    )
    history.add_argument("--out", required=True, metavar="JSONL", help="the event log to write")
    history.add_argument(
        "--end", type=_time, metavar="ISO", help="the day after the last one (default: today)"
    )
    history.add_argument("--days", type=int, default=30, metavar="N", help="default 30")
    history.add_argument("--seed", type=int, default=17, metavar="N", help="default 17")
    history.set_defaults(func=cmd_generate_history)

    graph = commands.add_parser(
        "graph", help="dataset/job/column lineage graph as a self-contained HTML page (and SVG)"
    )
    _source_arguments(graph)
    graph.add_argument("--since", type=_time, metavar="ISO", help="only runs started from then")
    graph.add_argument("--until", type=_time, metavar="ISO", help="only runs started before")
    graph.add_argument("--out", required=True, metavar="HTML", help="the page to write")
    graph.add_argument("--svg", metavar="SVG", help="also write the graph as a standalone SVG")
    graph.set_defaults(func=cmd_graph)
    return lineage


def _stderr(message: str) -> None:
    print(f"beamwright: {message}", file=sys.stderr)


def _load(args: argparse.Namespace, since: dt.datetime | None, until: dt.datetime | None) -> Any:
    """The EventLog the arguments name, filtered to the namespace and to runs started in
    ``[since, until)``. A Marquez server is asked only for that window."""
    from lineage.reports.events import read_files, read_marquez

    if args.marquez:
        log = read_marquez(
            args.marquez, since=since, until=until, api_key=os.environ.get("MARQUEZ_API_KEY")
        )
    else:
        log = read_files(args.events)
    for warning in log.warnings:
        _stderr(f"warning: {warning}")
    return log.filtered(args.namespace, since, until)


def cmd_report(args: argparse.Namespace) -> int:
    """Writes compliance.html and compliance.md into ``--out``; exit 1 on ``--fail-on``."""
    from lineage.reports.compliance import analyse, severity_rank
    from lineage.reports.events import EventLogError
    from lineage.reports.graph import build_laid_out_graph
    from lineage.reports.render import compliance_sections, to_html, to_markdown
    from lineage.reports.svg import render_svg

    try:
        log = _load(args, args.since, args.until)
    except EventLogError as exc:
        _stderr(str(exc))
        return EXIT_INVALID
    report = analyse(log)
    title = "Compliance report" + (f": namespace {args.namespace}" if args.namespace else "")
    sections = compliance_sections(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compliance.md").write_text(to_markdown(title, sections), encoding="utf-8")
    graph = render_svg(build_laid_out_graph(log), label="lineage graph") if log.runs else None
    (out / "compliance.html").write_text(to_html(title, sections, graph), encoding="utf-8")
    counts = ", ".join(f"{n} {s}" for s, n in report.severity_counts().items())
    print(f"{report.runs} run(s) of {len(report.jobs)} job(s); findings: {counts}")
    print(f"wrote {out / 'compliance.html'} and {out / 'compliance.md'}")
    if args.fail_on and any(
        severity_rank(f.severity) <= severity_rank(args.fail_on) for f in report.findings
    ):
        return EXIT_FINDINGS
    return EXIT_OK


def cmd_access(args: argparse.Namespace) -> int:
    """Prints the access analysis; the baseline days before the window are loaded with it."""
    from lineage.reports.access import DEFAULT_WINDOW_DAYS, MIN_HISTORY_DAYS, analyse_access
    from lineage.reports.events import EventLogError
    from lineage.reports.render import access_text

    end = args.end or dt.datetime.now(dt.timezone.utc)
    start = args.start or end - dt.timedelta(days=DEFAULT_WINDOW_DAYS)
    if end <= start:
        _stderr("--to must be after --from")
        return EXIT_INVALID
    if args.baseline_days < MIN_HISTORY_DAYS:
        _stderr(f"--baseline-days must be at least {MIN_HISTORY_DAYS}")
        return EXIT_INVALID
    history_start = start.replace(hour=0, minute=0, second=0, microsecond=0)
    history_start -= dt.timedelta(days=args.baseline_days)
    try:
        log = _load(args, history_start, end)
    except EventLogError as exc:
        _stderr(str(exc))
        return EXIT_INVALID
    report = analyse_access(log, start, end, baseline_days=args.baseline_days)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(access_text(report), end="")
    return EXIT_FINDINGS if args.fail_on_anomaly and report.anomalies else EXIT_OK


def cmd_generate_history(args: argparse.Namespace) -> int:
    """Writes the example month (see pipelines/dev/lineage_history.py)."""
    from pipelines.dev.lineage_history import generate, write

    if args.days < 1:
        _stderr("--days must be at least 1")
        return EXIT_INVALID
    end = args.end or dt.datetime.now(dt.timezone.utc)
    count = write(args.out, generate(end, days=args.days, seed=args.seed))
    print(f"wrote {count} events of {args.days} day(s) to {args.out}")
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    """Writes the graph page (and the standalone SVG with ``--svg``)."""
    from lineage.reports.events import EventLogError
    from lineage.reports.graph import build_laid_out_graph
    from lineage.reports.svg import render_graph_html, render_svg

    try:
        log = _load(args, args.since, args.until)
    except EventLogError as exc:
        _stderr(str(exc))
        return EXIT_INVALID
    graph = build_laid_out_graph(log)
    title = "Lineage graph" + (f": namespace {args.namespace}" if args.namespace else "")
    page = Path(args.out)
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_graph_html(graph, title=title, source=log.source), encoding="utf-8")
    written = [str(page)]
    if args.svg:
        svg = Path(args.svg)
        svg.parent.mkdir(parents=True, exist_ok=True)
        svg.write_text(render_svg(graph, label=title), encoding="utf-8")
        written.append(str(svg))
    jobs = sum(1 for n in graph.nodes.values() if n.kind == "job")
    datasets = sum(1 for n in graph.nodes.values() if n.kind == "dataset")
    print(
        f"{jobs} job(s), {datasets} dataset(s), {len(graph.links)} column link(s); "
        f"wrote {' and '.join(written)}"
    )
    return EXIT_OK
