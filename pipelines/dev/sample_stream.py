"""``beamwright sample-stream``: a local Kafka broker with a live stream of sample orders, to try
streaming specs on this machine (README, "Kafka and streaming").

It starts the embedded Tansu broker (:mod:`pipelines.dev.kafka_broker`) on 127.0.0.1, creates
the topic and produces JSON orders with an event time ``ts`` at a steady rate until stopped
(Ctrl-C) or ``--count`` orders were sent. Like real feeds it is not clean: every
``--bad-every``-th order has a negative amount (the spec's ``min`` rule rejects it), and every
``--late-every``-th is stamped five minutes in the past (the window step dead-letters it as
``late`` once its window has closed).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import random
import time
from collections.abc import Iterator

COUNTRIES = ("NL", "DE", "FR", "BE", "ES")


def sample_orders(seed: int, bad_every: int, late_every: int) -> Iterator[dict]:
    """Endless orders stamped with the current time (some invalid, some late)."""
    rng = random.Random(seed)
    for n in range(1, 1 << 62):
        now = _dt.datetime.now(_dt.timezone.utc)
        late = late_every and n % late_every == 0
        ts = now - _dt.timedelta(minutes=5) if late else now
        amount = round(rng.uniform(5, 500), 2)
        yield {
            "order_id": f"o-{seed}-{n}",
            "customer_id": f"c{rng.randrange(1000):04d}",
            "country": rng.choice(COUNTRIES),
            "amount": -amount if bad_every and n % bad_every == 0 else amount,
            "ts": ts.isoformat().replace("+00:00", "Z"),
        }


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-stream",
        help="start a local Kafka broker and produce sample orders (to try streaming specs)",
    )
    p.add_argument("--port", type=int, default=9092, help="broker port on 127.0.0.1")
    p.add_argument("--topic", default="orders")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--rate", type=float, default=20.0, help="orders per second")
    p.add_argument("--count", type=int, default=None, help="stop after this many orders")
    p.add_argument("--bad-every", type=int, default=25, help="0: no invalid orders")
    p.add_argument("--late-every", type=int, default=50, help="0: no late orders")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the broker and produce until Ctrl-C (after ``--count`` orders it only serves)."""

    from confluent_kafka import Producer

    from pipelines.dev.kafka_broker import EmbeddedBroker
    from pipelines.interrupts import stop_on_signals

    stop_on_signals()
    with EmbeddedBroker(args.port) as broker:
        broker.create_topic(args.topic, args.partitions)
        print(
            f"broker on {broker.bootstrap_servers}, topic '{args.topic}' "
            f"({args.partitions} partitions); producing {args.rate:g} orders/s, Ctrl-C stops",
            flush=True,
        )
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 20})
        orders = sample_orders(args.seed, args.bad_every, args.late_every)
        sent = 0
        try:
            while args.count is None or sent < args.count:
                producer.produce(args.topic, json.dumps(next(orders)).encode())
                producer.poll(0)
                sent += 1
                time.sleep(1 / args.rate)
            producer.flush(10)
            print(f"sent {sent} orders; the broker keeps serving until Ctrl-C", flush=True)
            while True:  # a timed sleep, so the main thread wakes to see Ctrl-C whichever
                time.sleep(0.5)  # thread the kernel handed the signal to (an untimed wait may not)
        except KeyboardInterrupt:
            producer.flush(10)
            print(f"sent {sent} orders", flush=True)
    return 0
