"""``beamwright secrets start|status|rotate|audit|stop|run``: credential rotation from the shell.

Each command is a thin layer over :class:`connectors.secrets.service.RotationService`; they
share a home directory (``--home``, ``$BEAMWRIGHT_SECRETS_HOME``, or the user's
``$XDG_STATE_HOME/beamwright``, never the current directory) holding policies, state, the
audit log and the failure inbox. Only the standard library is imported here; the service and its client libraries are
imported by the command that runs, so ``beamwright --help`` stays fast.

``start`` registers a policy (and creates the first version if the secret has none), ``run``
is the scheduler that must keep running for scheduled, proactive and reactive rotations and
for disabling ``previous`` when its overlap ends (``--once`` for cron-style use).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK, EXIT_RUN_FAILED

HOME_ENV = "BEAMWRIGHT_SECRETS_HOME"


def _home(args: argparse.Namespace) -> Path:
    from connectors.secrets.state import default_home

    return Path(args.home or os.environ.get(HOME_ENV) or default_home())


def _service(args: argparse.Namespace) -> Any:
    from connectors.secrets.service import RotationService

    return RotationService(_home(args), actor=args.actor)


def _json_arg(text: str, flag: str) -> Any:
    """A JSON value given inline or as ``@path``."""
    try:
        if text.startswith("@"):
            return json.loads(Path(text[1:]).read_text())
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{flag}: expected JSON or @file ({exc})") from None


def _load_policy_file(path: str) -> dict[str, Any]:
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def _policy_data(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = _load_policy_file(args.policy) if args.policy else {}
    data["secret"] = args.name
    flags = {
        "schedule": args.schedule,
        "expiry_threshold": args.expiry_threshold,
        "refresh_interval": args.refresh_interval,
        "longest_bundle": args.longest_bundle,
        "overlap": args.overlap,
        "failure_backoff": args.failure_backoff,
    }
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.store:
        data["store"] = _json_arg(args.store, "--store")
    data.setdefault("store", {"type": "file", "path": str(_home(args) / "store")})
    if args.issuer:
        data["issuer"] = _json_arg(args.issuer, "--issuer")
    if args.verifier:
        data["verifier"] = _json_arg(args.verifier, "--verifier")
    if args.notify:
        data["notify"] = [_json_arg(n, "--notify") for n in args.notify]
    if args.no_reactive:
        data["reactive"] = False
    return data


def _result_line(result: Any) -> str:
    line = f"{result.secret}: {result.outcome} ({result.trigger})"
    if result.version:
        line += f" version {result.version}"
    if result.previous:
        line += f", previous {result.previous}"
    if result.reason and result.outcome != "rotated":
        line += f": {result.reason}"
    return line


# --------------------------------------------------------------------------- commands


def cmd_start(args: argparse.Namespace) -> int:
    from connectors.secrets.policy import RotationPolicy

    policy = RotationPolicy.from_dict(_policy_data(args))
    service = _service(args)
    try:
        initial = service.start(policy, replace=args.replace)
    finally:
        service.close()
    print(
        f"rotation policy for {policy.secret} started: overlap {policy.overlap:g}s "
        f"(refresh {policy.refresh_interval:g}s), schedule {policy.schedule or '-'}, "
        f"expiry threshold {policy.expiry_threshold if policy.expiry_threshold is not None else '-'}, "
        f"reactive {'on' if policy.reactive else 'off'}"
    )
    if initial is not None:
        print(_result_line(initial))
        return EXIT_OK if initial.outcome == "rotated" else EXIT_RUN_FAILED
    return EXIT_OK


def _version_text(v: Any) -> str:
    if v is None:
        return "-"
    text = f"version {v.version} ({v.state})"
    if v.expire_time:
        text += f", expires {v.expire_time.isoformat(timespec='seconds')}"
    return text


def cmd_status(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        statuses = service.status(args.name)
    finally:
        service.close()
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
        return EXIT_OK
    if not statuses:
        print(f"no rotation policies in {_home(args)}")
    for s in statuses:
        print(f"{s.name}  {'active' if s.active else 'stopped'}  store={s.policy['store']['type']}")
        print(f"  current   {_version_text(s.current)}{'  EXPIRED' if s.expired else ''}")
        print(f"  previous  {_version_text(s.previous)}")
        print(f"  pending   {_version_text(s.pending)}")
        for version, when in s.retiring.items():
            print(f"  disabling version {version} at {when} (end of overlap)")
        print(
            f"  next run {s.next_run or '-'}, last rotation {s.last_rotation or '-'}, last failure {s.last_failure or '-'}"
        )
        if s.secret_expire_time:
            print(f"  the store deletes the whole secret at {s.secret_expire_time}")
        if s.store_error:
            print(f"  store: {s.store_error}")
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        result = service.rotate(args.name, reason=args.reason or "")
    finally:
        service.close()
    print(_result_line(result))
    return EXIT_OK if result.outcome == "rotated" else EXIT_RUN_FAILED


def cmd_audit(args: argparse.Namespace) -> int:
    service = _service(args)
    lines = service.audit_log(args.name, since=args.since, limit=args.limit)
    for line in lines:
        if args.json:
            print(json.dumps(line, sort_keys=True))
            continue
        fields = [line["time"], line["actor"], line["secret"], line["action"], line["outcome"]]
        fields += [f"v{line['version']}" if line["version"] else "-", line["fingerprint"] or "-"]
        text = "  ".join(fields)
        if line.get("trigger"):
            text += f"  [{line['trigger']}]"
        if line.get("detail"):
            text += f"  {line['detail']}"
        print(text)
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        service.stop(args.name)
    finally:
        service.close()
    print(
        f"rotation policy for {args.name} stopped; versions already scheduled are still disabled by 'run'"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from connectors.secrets.policy import parse_duration

    service = _service(args)
    try:
        if args.once:
            results = service.tick()
            for result in results:
                print(_result_line(result))
            return EXIT_RUN_FAILED if any(r.outcome != "rotated" for r in results) else EXIT_OK
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"rotation service running on {_home(args)} (Ctrl-C to stop)", flush=True)
        service.run(stop, interval=parse_duration(args.interval))
        return EXIT_OK
    finally:
        service.close()


def _guarded(handler: Any) -> Any:
    """Turn errors into one readable line (through the one redaction path): an unreachable
    store exits 1 like a failed rotation (retry later), configuration errors exit 2."""

    def run(args: argparse.Namespace) -> int:
        from connectors.secrets import SecretError
        from connectors.secrets.audit import scrub
        from connectors.secrets.model import SecretUnavailable

        try:
            return handler(args)
        except SecretUnavailable as exc:
            print(
                f"beamwright secrets: the store is unavailable: {scrub(str(exc))}", file=sys.stderr
            )
            return EXIT_RUN_FAILED
        except (SecretError, ValueError, OSError) as exc:
            print(f"beamwright secrets: {scrub(str(exc))}", file=sys.stderr)
            return EXIT_INVALID

    return run


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``secrets`` and its subcommands to the ``beamwright`` parser's subparsers."""
    parser = subparsers.add_parser(
        "secrets", help="rotate credentials: start, status, rotate, audit, stop, run"
    )
    parser.add_argument(
        "--home", help=f"service directory (default: ${HOME_ENV} or $XDG_STATE_HOME/beamwright)"
    )
    parser.add_argument("--actor", help="who to name in the audit log (default: user@host)")
    sub = parser.add_subparsers(dest="secrets_command", required=True)

    start = sub.add_parser(
        "start", help="register a rotation policy; create the first version if needed"
    )
    start.add_argument("name", help="secret name")
    start.add_argument(
        "--policy", metavar="FILE", help="policy as YAML or JSON; flags override its fields"
    )
    start.add_argument(
        "--store",
        metavar="JSON",
        help="provider config, inline or @file (default: file store in the home)",
    )
    start.add_argument(
        "--schedule", metavar="CRON", help="scheduled rotation (5 fields, or 6 with seconds last)"
    )
    start.add_argument(
        "--expiry-threshold", metavar="DURATION", help="rotate when current expires within this"
    )
    start.add_argument(
        "--refresh-interval", metavar="DURATION", help="consumers' refresh interval (default 60s)"
    )
    start.add_argument(
        "--longest-bundle", metavar="DURATION", help="longest use of one read value (default 60s)"
    )
    start.add_argument(
        "--overlap",
        metavar="DURATION",
        help="how long previous stays valid (min 2 x refresh + bundle)",
    )
    start.add_argument(
        "--failure-backoff", metavar="DURATION", help="pause automatic triggers after a failure"
    )
    start.add_argument(
        "--no-reactive",
        action="store_true",
        help="ignore consumers' authentication-failure reports",
    )
    start.add_argument(
        "--issuer", metavar="JSON", help='how values are made, e.g. {"type": "random", "bytes": 32}'
    )
    start.add_argument(
        "--verifier", metavar="JSON", help='health check, e.g. {"type": "http", "url": "..."}'
    )
    start.add_argument(
        "--notify",
        metavar="JSON",
        action="append",
        default=[],
        help="a webhook or smtp notifier (repeatable)",
    )
    start.add_argument(
        "--replace",
        action="store_true",
        help="replace a different policy already registered under this name",
    )
    start.set_defaults(func=_guarded(cmd_start))

    status = sub.add_parser(
        "status", help="versions, overlap deadlines and schedule of one or all secrets"
    )
    status.add_argument("name", nargs="?")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_guarded(cmd_status))

    rotate = sub.add_parser("rotate", help="rotate a secret now")
    rotate.add_argument("name")
    rotate.add_argument("--reason", help="recorded in the audit log and notifications")
    rotate.set_defaults(func=_guarded(cmd_rotate))

    audit = sub.add_parser("audit", help="print the audit log")
    audit.add_argument("name", nargs="?")
    audit.add_argument("--since", metavar="ISO_TIME")
    audit.add_argument("--limit", type=int, metavar="N", help="only the last N lines")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")
    audit.set_defaults(func=_guarded(cmd_audit))

    stop = sub.add_parser("stop", help="stop rotating a secret (scheduled disables still happen)")
    stop.add_argument("name")
    stop.set_defaults(func=_guarded(cmd_stop))

    run = sub.add_parser(
        "run", help="run the rotation scheduler (reports, disables, due rotations)"
    )
    run.add_argument("--once", action="store_true", help="one round, then exit (for cron)")
    run.add_argument(
        "--interval", default="1s", metavar="DURATION", help="time between rounds (default 1s)"
    )
    run.set_defaults(func=_guarded(cmd_run))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipelines.secrets_cli ...``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="beamwright")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
