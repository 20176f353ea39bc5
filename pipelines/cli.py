"""The ``beamwright`` command line.

Start-up stays fast: this module imports only the standard library at the top. Beam, pyarrow
and Great Expectations are imported by the commands that need them, so ``beamwright --help``,
``beamwright templates list`` and ``beamwright schema`` never pay for them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK, BeamwrightError


def _params(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"beamwright: --param expects key=value, got {pair!r}")
        values[key.strip()] = value
    return values


def _is_spec_file(target: str) -> bool:
    return target.endswith((".yaml", ".yml", ".json")) or os.path.sep in target


def load_target(target: str, params: dict[str, str]) -> Any:
    """A PipelineSpec from a spec file or a template name plus parameters."""
    from pipelines.loading import SpecError, expand_template, load_spec

    if _is_spec_file(target):
        return load_spec(target, params)
    import templates

    try:
        template = templates.get_template(target)
    except KeyError as exc:
        raise SpecError([str(exc.args[0]) + " (or give a spec file path)"], target) from None
    return expand_template(template, params)


class _VersionAction(argparse.Action):
    """``--version``, looked up only when asked for (not on every start)."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from pipelines.ids import beamwright_version

        parser.exit(message=f"beamwright {beamwright_version()}\n")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _load_or_report(args: argparse.Namespace) -> Any:
    """The spec for ``args.target``, or None after printing why it is invalid."""
    from pipelines.loading import SpecError

    try:
        return load_target(args.target, _params(args.param))
    except SpecError as exc:
        _stderr(f"beamwright: {exc}")
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 120)
    spec = _load_or_report(args)
    if spec is None:
        return EXIT_INVALID
    if args.batch_size:
        spec.run.batch_size = args.batch_size
    if args.runner:
        spec.run.runner = args.runner
    _apply_runner_options(spec, args)
    if args.run_as:
        spec.lineage.run_as = args.run_as
    from pipelines.display import LiveProgress, render_summary
    from pipelines.run import ProgressPoller, RunFailed, run_spec

    if args.dry_run or spec.run.runner_options.get("dry_run"):
        from pipelines.run import dry_run_spec

        render_summary(dry_run_spec(spec, graph_path=args.graph), console)
        return EXIT_OK
    nodes = [s.name for s in spec.sources] + [s.name for s in spec.steps]
    spec_path = args.target if _is_spec_file(args.target) else None
    if args.detach:
        from pipelines.jobs import detach_spec

        record = detach_spec(spec, spec_path=spec_path)
        print(f"submitted job {record.job_id} (run {record.run_id}) to {record.endpoint}")
        print(f"  follow it: beamwright jobs status|metrics|cancel {record.job_id}")
        return EXIT_OK
    quiet = args.quiet or not console.is_terminal
    code = EXIT_OK
    try:
        if args.follow:
            summary = _follow(spec, args, console, spec_path)
        elif quiet:
            summary = run_spec(spec, spec_path=spec_path)
        else:
            with LiveProgress(console, nodes) as live, ProgressPoller(live.update):
                summary = run_spec(spec, spec_path=spec_path)
    except RunFailed as exc:
        summary = exc.summary
        code = exc.exit_code
    except KeyboardInterrupt:
        _stderr("beamwright: interrupted; the run was aborted")
        return 130
    render_summary(summary, console)
    if args.summary_json:
        summary.write_json(args.summary_json)
    return code


def _follow(spec: Any, args: argparse.Namespace, console: Any, spec_path: str | None) -> Any:
    """``run --follow``: bounded cycles until Ctrl-C, which finishes the current cycle."""
    import signal
    import threading

    from pipelines.run import follow_spec

    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        console.print("stopping after the current cycle…")
        stop.set()

    previous = signal.signal(signal.SIGINT, request_stop)

    def report(cycle: int, summary: Any) -> None:
        console.print(
            f"cycle {cycle}: read {summary.rows_read:,} rows, dead-lettered "
            f"{summary.rows_dead_lettered:,} in {summary.elapsed_seconds:.2f} s"
        )

    try:
        return follow_spec(
            spec,
            interval_s=args.interval,
            max_cycles=args.max_cycles,
            stop=stop,
            on_cycle=report,
            spec_path=spec_path,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a spec without running it: its shape, expressions and field references (no
    Beam imported); with ``--deep`` also build the graph and try each step on an empty batch
    of each input's real schema. Every problem is reported as path + problem + hint."""
    from pipelines.checks import deep_problems, static_problems

    spec = _load_or_report(args)
    if spec is None:
        return EXIT_INVALID
    problems = static_problems(spec)
    if not problems and args.deep:
        problems = deep_problems(spec)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        _stderr(f"beamwright: {args.target} is invalid ({len(problems)} problem(s)):\n{lines}")
        return EXIT_INVALID
    print(
        f"{args.target}: valid ({len(spec.sources)} source(s), {len(spec.steps)} step(s), "
        f"{len(spec.sinks)} sink(s))"
    )
    return EXIT_OK


def _remote_secrets_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-local-secrets",
        action="store_true",
        help="run.allow_local_secrets: env and file secrets on runners whose workers are other "
        "processes, when those workers have them too (same machine, or baked into the image)",
    )


def _apply_runner_options(spec: Any, args: argparse.Namespace) -> None:
    """``--option key=value`` and the Beam flags after ``--`` over ``run.runner_options``."""
    from pipelines.runners import option_overrides

    spec.run.runner_options.update(option_overrides(args.option, args.beam_flags))
    if args.allow_local_secrets:
        spec.run.allow_local_secrets = True


def cmd_plan(args: argparse.Namespace) -> int:
    """Translate for a runner without running or submitting (:mod:`pipelines.plan`); the job
    JSON goes to ``--out`` (or stdout, with the summary line on stderr)."""
    spec = _load_or_report(args)
    if spec is None:
        return EXIT_INVALID
    from pipelines.plan import summary, translate

    _apply_runner_options(spec, args)
    plan = translate(spec, args.runner, streaming=True if args.streaming else None)
    text = json.dumps(plan, indent=2) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{summary(plan)}; written to {args.out}")
    else:
        sys.stdout.write(text)
        _stderr(summary(plan))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace) -> int:
    """``beamwright jobs status|metrics|cancel JOB`` (:mod:`pipelines.jobs`)."""
    from pipelines import jobs

    if args.action == "metrics":
        nodes = jobs.job_metrics(args.job_id, endpoint=args.job_endpoint)
        print(json.dumps([n.__dict__ for n in nodes], indent=2))
        return EXIT_OK
    act = jobs.cancel_job if args.action == "cancel" else jobs.job_status
    report = act(args.job_id, endpoint=args.job_endpoint)
    print(json.dumps(report, indent=2))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from pipelines.spec import json_schema

    print(json.dumps(json_schema(), indent=2))
    return EXIT_OK


def cmd_templates(args: argparse.Namespace) -> int:
    import templates

    if args.action == "list":
        for name in templates.names():
            t = templates.get_template(name)
            print(f"{name}  (v{t.version})  {t.description}")
        return EXIT_OK
    if not args.name:
        _stderr(f"beamwright: templates {args.action} needs a template name")
        return EXIT_INVALID
    if args.action == "export":
        return _export_template(args)
    try:
        t = templates.get_template(args.name)
    except KeyError as exc:
        _stderr(f"beamwright: {exc.args[0]}")
        return EXIT_INVALID
    print(f"{t.name} (v{t.version})\n  {t.description}\n\nparameters:")
    for name, p in t.parameters.items():
        choices = f" choices: {', '.join(map(str, p.choices))}." if p.choices else ""
        if p.default is not None:
            default = f"default {json.dumps(p.default)}"
        else:
            default = "required" if p.required else "optional, no default"
        print(f"  {name} ({p.type}) {default}\n      {p.description}{choices}")
    return EXIT_OK


def _export_template(args: argparse.Namespace) -> int:
    """``templates export``: the expanded spec as a YAML file ``run`` accepts unchanged."""
    from pipelines.template_export import export_header, spec_yaml

    params = _params(args.param)
    if args.with_tests:
        from pipelines.loading import SpecError
        from pipelines.spec_test_targets import load_test_target

        try:
            target = load_test_target(args.name, params, is_file=False)
        except SpecError as exc:
            _stderr(f"beamwright: {exc}")
            return EXIT_INVALID
        spec = target.exportable_spec()
        for case in target.left_out():
            _stderr(f"beamwright: case {case.label} not exported: its parameters make another spec")
    else:
        spec = _load_or_report(argparse.Namespace(target=args.name, param=args.param))
    if spec is None:
        return EXIT_INVALID
    text = spec_yaml(spec, header=export_header(args.name, params))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"{args.name}: written to {args.out} (run it: beamwright run {args.out})")
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    if args.nexmark:
        from pipelines.dev.nexmark_bench import main as nexmark_main

        return nexmark_main(args)
    if args.documents:
        from pipelines.dev.document_accuracy import main as documents_main

        return documents_main(args)
    from pipelines.dev.bench import main as bench_main

    return bench_main(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beamwright",
        description="Governed, declarative data pipelines on Apache Beam.",
    )
    p.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    p.add_argument("--verbose", "-v", action="store_true", help="show Beam's own log messages")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a template or a spec file")
    run.add_argument("target", help="template name (see 'templates list') or spec file path")
    run.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    run.add_argument("--batch-size", type=int, help="rows per Arrow batch (overrides the spec)")
    run.add_argument("--runner", choices=["direct", "portable", "flink", "dataflow"])
    run.add_argument(
        "--as",
        dest="run_as",
        metavar="PRINCIPAL",
        help="who runs this, recorded in lineage (service:NAME for a service account); "
        "default: $BEAMWRIGHT_PRINCIPAL, else the CI system's user, else the OS user",
    )
    run.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Beam pipeline option over run.runner_options, typed (true, 4, [a, b]); "
        "standard Beam flags also go after '--', e.g. -- --project=p --region=r",
    )
    _remote_secrets_flag(run)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="translate for --runner without running (as Beam's dry_run option does): the job "
        "graph is written, nothing is submitted or touched",
    )
    run.add_argument(
        "--graph",
        metavar="PATH",
        help="with --dry-run: where the job graph goes "
        "(default beamwright-output/<job>/job-graph-<runner>.json)",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="streaming specs on portable/flink: submit, emit START, print the job id and "
        "return; follow up with 'beamwright jobs'",
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no live progress display")
    run.add_argument(
        "--follow",
        action="store_true",
        help="keep running: bounded cycles from the committed Kafka offsets; Ctrl-C stops cleanly",
    )
    run.add_argument("--interval", type=float, default=5.0, help="seconds between --follow cycles")
    run.add_argument("--max-cycles", type=int, help="stop --follow after this many cycles")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check a spec (or template parameters) without running")
    val.add_argument("target")
    val.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    val.add_argument(
        "--deep",
        action="store_true",
        help="also build the Beam graph (checks files, schemas, secrets)",
    )
    val.set_defaults(func=cmd_validate)

    plan = sub.add_parser(
        "plan",
        help="translate for a runner without running: Dataflow's job (offline), or the "
        "pipeline proto's transforms for portable/flink",
    )
    plan.add_argument("target", help="template name or spec file path")
    plan.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE")
    plan.add_argument("--runner", choices=["dataflow", "portable", "flink"], default="dataflow")
    plan.add_argument(
        "--streaming",
        action="store_true",
        help="a streaming job, sources that can be unbounded made unbounded (default: "
        "streaming only when a source is unbounded in the spec)",
    )
    plan.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Beam pipeline option over run.runner_options (e.g. project=my-project); "
        "Dataflow's project, region and temp_location default to placeholders",
    )
    _remote_secrets_flag(plan)
    plan.add_argument("--out", metavar="PATH", help="write the JSON here (default: stdout)")
    plan.set_defaults(func=cmd_plan)

    jobs = sub.add_parser(
        "jobs", help="detached jobs (run --detach) through Beam's Job API: status, metrics, cancel"
    )
    jobs.add_argument("action", choices=["status", "metrics", "cancel"])
    jobs.add_argument("job_id", metavar="JOB")
    jobs.add_argument(
        "--job-endpoint", metavar="HOST:PORT", help="the job service (default: as submitted)"
    )
    jobs.set_defaults(func=cmd_jobs)

    sch = sub.add_parser("schema", help="print the JSON Schema of spec files")
    sch.set_defaults(func=cmd_schema)

    tpl = sub.add_parser(
        "templates", help="list templates, show one's parameters, or export its expanded spec"
    )
    tpl.add_argument("action", choices=["list", "show", "export"])
    tpl.add_argument("name", nargs="?")
    tpl.add_argument(
        "--param", "-p", action="append", default=[], metavar="KEY=VALUE", help="export: values"
    )
    tpl.add_argument("--out", metavar="FILE", help="export: write the YAML here (default: stdout)")
    tpl.add_argument(
        "--with-tests",
        action="store_true",
        help="export: include the template's tests (expanded with its tests file's parameters)",
    )
    tpl.set_defaults(func=cmd_templates)

    from pipelines.dev.bench_cases import CASES, case_names  # not the bench: start-up cost
    from pipelines.dev.nexmark_bench import MIN_EVENTS, event_count, query_numbers

    bench = sub.add_parser(
        "bench",
        help="measure throughput (generates its own data)",
        description="Measure throughput on generated data: the file cases (default), or one "
        "of --kafka, --postgres, --postgres-upsert, --http, --documents, --nexmark.",
    )
    bench.add_argument(
        "--rows", type=int, default=1_000_000, help="rows per file case (default: %(default)s)"
    )
    bench.add_argument(
        "--baseline-rows",
        type=int,
        default=200_000,
        help="rows for the per-element baseline case (default: %(default)s)",
    )
    bench.add_argument(
        "--batch-size", type=int, default=125_000, help="rows per batch (default: %(default)s)"
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=2,
        help="direct_num_workers (threads) (default: %(default)s)",
    )
    bench.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs per case, median reported (default: %(default)s)",
    )
    bench.add_argument("--json", action="store_true", help="print results as JSON")
    bench.add_argument(
        "--workdir",
        help="where to put generated data and outputs, kept afterwards (default: a temp dir, "
        "removed when the bench succeeds, kept and printed when it fails)",
    )
    bench.add_argument("--case", help=argparse.SUPPRESS)  # one case, in this process
    bench.add_argument(
        "--cases",
        type=case_names,
        help=f"comma-separated cases to run (default: all): {', '.join(CASES)}",
    )
    bench.add_argument(
        "--kafka", action="store_true", help="Kafka -> validate -> Parquet vs a raw consumer loop"
    )
    bench.add_argument(
        "--kafka-messages",
        type=int,
        default=1_000_000,
        help="messages for --kafka (default: %(default)s)",
    )
    bench.add_argument(
        "--postgres",
        action="store_true",
        help="Parquet -> postgres lookup step -> Parquet vs a plain psycopg loop (--rows orders)",
    )
    bench.add_argument(
        "--postgres-table-rows",
        type=int,
        default=100_000,
        help="rows of the lookup table for --postgres (default: %(default)s)",
    )
    bench.add_argument(
        "--postgres-upsert",
        action="store_true",
        help="Parquet -> postgres sink (insert, then update pass) vs plain psycopg COPY and "
        "executemany loops (--rows rows)",
    )
    bench.add_argument(
        "--http",
        action="store_true",
        help="http step per-row and bulk vs a plain sequential loop (local API, 20 ms latency)",
    )
    bench.add_argument(
        "--http-rows",
        type=int,
        default=20_000,
        help="rows for --http's per-row case (default: %(default)s)",
    )
    bench.add_argument(
        "--http-bulk-rows",
        type=int,
        default=500_000,
        help="rows for --http's bulk case (default: %(default)s)",
    )
    bench.add_argument(
        "--documents",
        action="store_true",
        help="document_processing: field precision/recall per type on the shipped samples",
    )
    bench.add_argument(
        "--nexmark",
        action="store_true",
        help="Nexmark queries: Beam's Python implementation vs the specs in docs/examples/nexmark, "
        "same events, results compared",
    )
    bench.add_argument(
        "--nexmark-events",
        type=event_count,
        default=1_000_000,
        help=f"events to generate for --nexmark, at least {MIN_EVENTS} (default: %(default)s)",
    )
    bench.add_argument(
        "--nexmark-queries",
        type=query_numbers,
        help="comma-separated query numbers 0-12 for --nexmark (default: all)",
    )
    bench.set_defaults(func=cmd_bench)

    from pipelines.container import add_parser as add_container
    from pipelines.dev.sample_api import add_parser as add_sample_api
    from pipelines.dev.sample_records import add_parser as add_sample_records
    from pipelines.dev.sample_stream import add_parser as add_sample_stream
    from pipelines.flex import add_parser as add_flex
    from pipelines.ingest_cli import add_parser as add_ingest
    from pipelines.lineage_cli import add_parser as add_lineage
    from pipelines.secrets_cli import add_parser as add_secrets
    from pipelines.spec_test_cli import add_parser as add_test

    add_lineage(sub)
    add_secrets(sub)
    add_sample_stream(sub)
    add_sample_api(sub)
    add_sample_records(sub)
    add_ingest(sub)
    add_flex(sub)
    add_container(sub)
    add_test(sub, parse_params=_params, is_spec_file=_is_spec_file)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    argv = list(sys.argv[1:] if argv is None else argv)
    beam_flags: list[str] = []
    if "--" in argv:  # standard Beam options, for run and plan: ... -- --project=p
        cut = argv.index("--")
        argv, beam_flags = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    args.beam_flags = beam_flags
    if beam_flags and args.command not in ("run", "plan"):
        _stderr(f"beamwright {args.command}: Beam options after '--' are for run and plan only")
        return EXIT_INVALID
    # Beam logs optional-dependency notices (GCS, apitools) at import; they are noise here.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # a failing DoFn is reported once, readably, by the run summary; Beam's own
        # multi-page traceback is available with --verbose
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    try:
        return args.func(args)
    except BeamwrightError as exc:  # the class says what the exit code is
        _stderr(f"beamwright: {exc}")
        return exc.exit_code


def run() -> None:
    """The ``beamwright`` command: :func:`main`, then exit without a final garbage collection.

    A run leaves ~175k objects (Beam's graph, protos, pyarrow); the interpreter's collections
    at exit walked them all for ~0.3 s of a 2.5 s demo. ``gc.freeze`` moves them out of the
    collector's sight; files are closed and events sent by then, so nothing is lost.
    """
    import gc

    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
