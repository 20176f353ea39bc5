"""``beamwright ingest``: processes that make pushed API records durable in Kafka, for the
``api_integration`` template's ``webhook`` and ``streaming`` patterns (the pipeline then reads
the topic with the ``kafka`` source).

- ``ingest webhook --topic T --secret env:VAR [--port 8787] [--host 127.0.0.1]``: verifies
  HMAC-signed deliveries, refuses replays, appends accepted bodies
  (:mod:`connectors.ingest.webhook`).
- ``ingest stream --url URL --topic T [--format sse|jsonl]``: relays an event stream
  (:mod:`connectors.ingest.stream`).

The secret is a reference (``env:VAR``, ``file:/path`` or a store mapping), never the value.
"""

from __future__ import annotations

import argparse
from typing import Any

from connectors.errors import EXIT_OK
from pipelines.interrupts import stop_on_signals


def add_parser(sub: argparse._SubParsersAction) -> None:
    ingest = sub.add_parser(
        "ingest", help="append pushed API records to Kafka: signed webhooks, event streams"
    )
    kinds = ingest.add_subparsers(dest="ingest_kind", required=True)

    hook = kinds.add_parser("webhook", help="serve signed webhook deliveries into a topic")
    hook.add_argument("--topic", required=True)
    hook.add_argument("--secret", required=True, help="env:VAR, file:/path or a store mapping")
    hook.add_argument("--port", type=int, default=8787)
    hook.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface (default loopback only; put a TLS proxy in front for anything else)",
    )
    hook.add_argument("--path", default="", help="the one path accepted (default: any)")
    hook.add_argument("--window", type=float, default=300.0, help="timestamp tolerance, seconds")
    hook.add_argument(
        "--scheme",
        choices=["timestamped", "body"],
        default="timestamped",
        help="timestamped: HMAC of '<X-Timestamp>.<body>' (default); body: HMAC of the raw body "
        "(GitHub-style), replays refused by delivery id only",
    )
    hook.add_argument("--signature-header", default="X-Signature")
    hook.add_argument("--id-header", default="X-Webhook-Id", help="the delivery id's header")
    _kafka_flags(hook)
    hook.set_defaults(func=cmd_webhook)

    stream = kinds.add_parser("stream", help="relay server-sent events or JSON lines into a topic")
    stream.add_argument("--url", required=True)
    stream.add_argument("--topic", required=True)
    stream.add_argument("--format", choices=["sse", "jsonl"], default="sse")
    stream.add_argument("--max-events", type=int, help="stop after this many events")
    stream.add_argument(
        "--once", action="store_true", help="stop when the stream ends instead of reconnecting"
    )
    _kafka_flags(stream)
    stream.set_defaults(func=cmd_stream)


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap-servers", default="127.0.0.1:9092")


def resolve_secret(text: str) -> Any:
    """The :class:`connectors.secrets.Secret` a reference names (the value is never echoed)."""
    from connectors.secrets.refs import secret_ref
    from pipelines.loading import secret_reference

    data = secret_reference(text)
    if "store" in data:
        store = dict(data["store"])
        data = {"store": store, "name": store.pop("name"), "ref": store.pop("ref", "current")}
    return secret_ref(data).resolve()


def cmd_webhook(args: argparse.Namespace) -> int:
    from connectors.ingest.appender import KafkaAppender
    from connectors.ingest.signature import Scheme
    from connectors.ingest.webhook import WebhookIngest

    secret = resolve_secret(args.secret)
    appender = KafkaAppender(args.bootstrap_servers, args.topic)
    scheme = Scheme(
        timestamped=args.scheme == "timestamped",
        signature_header=args.signature_header,
        id_header=args.id_header,
    )
    server = WebhookIngest(
        appender,
        secret,
        host=args.host,
        port=args.port,
        path=args.path,
        window=args.window,
        scheme=scheme,
    )
    print(f"webhook ingest on {server.url} -> {args.topic}; Ctrl-C stops", flush=True)
    stop_on_signals()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        appender.close()
        print(f"outcomes: {dict(server.outcomes)}", flush=True)
    return EXIT_OK


def cmd_stream(args: argparse.Namespace) -> int:
    from connectors.ingest.appender import KafkaAppender
    from connectors.ingest.stream import relay

    appender = KafkaAppender(args.bootstrap_servers, args.topic)
    stop_on_signals()
    try:
        n = relay(
            args.url,
            appender,
            fmt=args.format,
            max_events=args.max_events,
            reconnect=not args.once,
        )
    except KeyboardInterrupt:
        n = None
    finally:
        appender.close()
    if n is not None:
        print(f"appended {n} events to {args.topic}", flush=True)
    return EXIT_OK
