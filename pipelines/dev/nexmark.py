"""Nexmark events, generated the way Beam's Java generator does, as the JSON lines Beam's Python
``ParseJsonEventFn`` reads (``apache_beam.testing.benchmarks.nexmark.nexmark_util``).

``python -m pipelines.dev.nexmark --events 1000000 --out events.jsonl [--kafka HOST:PORT --topic T]``

What is kept from Beam's generator (``sdks/java/testing/nexmark/.../sources/generator``):

- the kind of event ``n`` is fixed by ``n % 50``: 1 person, 3 auctions, 46 bids per 50 events;
- ids: person and auction ids are consecutive from 1000 (``lastBase0PersonId`` and
  ``lastBase0AuctionId``), so a bid or auction can name a person or auction that exists or
  is among the next 10 (the generator's "lead");
- skew: an auction's seller is a hot seller (the first of the last 100 people) with
  probability 3/4, a bid's auction a hot auction (the first of the last 100 auctions) with 1/2,
  its bidder a hot bidder (the second of the last 100 people) with 3/4; otherwise uniformly one
  of the 100 auctions in flight or the 1000 active people (plus the lead);
- prices ``round(10 ** (6 u) * 100)`` cents, 5 categories from 10, reserve = initial bid + a
  price, auction lengths uniform in ``[1, 2 * horizon]`` where the horizon is how long the
  next 100 auctions take to be created, extra padding to Beam's average sizes (person 200,
  auction 500, bid 100 bytes), cities, states and names from Beam's lists;
- event ``n``'s time is ``base_time_ms + n * inter_event_delay_us / 1000`` (one generator,
  a constant rate).

What differs: the random numbers (numpy's PCG64 by ``seed``, not ``java.util.Random``; the same
seed gives byte-identical files) and the strings (slices of one random pool of letters, which
is what keeps a million events to a few seconds). The default delay is 10 ms (100 events a
second): auctions then last 16.7 s on average, which is the duration Beam's Python
``WinningBids`` assumes (``expected_duration = 16667000`` microseconds) for its bid windows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PERSON_PROPORTION, AUCTION_PROPORTION, BID_PROPORTION = 1, 3, 46
DENOMINATOR = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION
FIRST_PERSON_ID = FIRST_AUCTION_ID = 1000
FIRST_CATEGORY_ID, NUM_CATEGORIES = 10, 5
HOT_RATIO = 100  # hot sellers/auctions/bidders: the first (bidders: second) of the last 100
ID_LEAD = 10  # ids of people/auctions not created yet that events may already name
US_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
US_CITIES = (
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
)
FIRST_NAMES = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah")
FIRST_NAMES += ("Deiter", "Walter")
LAST_NAMES = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones")
LAST_NAMES += ("Noris",)
BASE_TIME_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: fixed, so a seed fixes the file
POOL_SIZE = 1 << 20


@dataclass(frozen=True)
class NexmarkConfig:
    """Beam's ``NexmarkConfiguration`` defaults that shape the events."""

    events: int = 100_000
    seed: int = 0
    inter_event_delay_us: int = 10_000
    base_time_ms: int = BASE_TIME_MS
    hot_auction_ratio: int = 2
    hot_sellers_ratio: int = 4
    hot_bidders_ratio: int = 4
    num_in_flight_auctions: int = 100
    num_active_people: int = 1000
    avg_person_bytes: int = 200
    avg_auction_bytes: int = 500
    avg_bid_bytes: int = 100


def last_person_id(n: np.ndarray) -> np.ndarray:
    """Beam's ``lastBase0PersonId``: the newest person id (base 0) at event ``n``."""
    epoch, offset = np.divmod(n, DENOMINATOR)
    return epoch * PERSON_PROPORTION + np.minimum(offset, PERSON_PROPORTION - 1)


def last_auction_id(n: np.ndarray) -> np.ndarray:
    """Beam's ``lastBase0AuctionId``: the newest auction id (base 0) at event ``n``."""
    epoch, offset = np.divmod(n, DENOMINATOR)
    before = offset < PERSON_PROPORTION
    epoch = np.where(before, epoch - 1, epoch)
    offset = np.where(
        before | (offset >= PERSON_PROPORTION + AUCTION_PROPORTION),
        AUCTION_PROPORTION - 1,
        offset - PERSON_PROPORTION,
    )
    return epoch * AUCTION_PROPORTION + offset


def _uniform_below(rng: np.random.Generator, bound: np.ndarray) -> np.ndarray:
    """One integer in ``[0, bound)`` per element (Beam's ``nextLong(random, bound)``)."""
    return np.floor(rng.random(len(bound)) * bound).astype(np.int64)


def _next_person_id(rng: np.random.Generator, n: np.ndarray, cfg: NexmarkConfig) -> np.ndarray:
    """Beam's ``nextBase0PersonId``: one of the active people, or one about to join."""
    people = last_person_id(n) + 1
    active = np.minimum(people, cfg.num_active_people)
    return people - active + _uniform_below(rng, active + ID_LEAD)


def _next_auction_id(rng: np.random.Generator, n: np.ndarray, cfg: NexmarkConfig) -> np.ndarray:
    """Beam's ``nextBase0AuctionId``: one of the auctions in flight, or one about to open."""
    newest = last_auction_id(n)
    oldest = np.maximum(newest - cfg.num_in_flight_auctions, 0)
    return oldest + _uniform_below(rng, newest - oldest + 1 + ID_LEAD)


def _prices(rng: np.random.Generator, count: int) -> np.ndarray:
    return np.round(10.0 ** (rng.random(count) * 6.0) * 100.0).astype(np.int64)


class _Strings:
    """Random letter strings as slices of one pool: vectorised and deterministic by seed."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        letters = rng.integers(ord("a"), ord("z") + 1, POOL_SIZE, dtype=np.uint8)
        letters[rng.random(POOL_SIZE) < 0.1] = ord(" ")  # Beam's nextString has spaces too
        self.pool = letters.tobytes().decode("ascii")

    def exact(self, lengths: np.ndarray) -> list[str]:
        starts = self.rng.integers(0, POOL_SIZE - int(lengths.max(initial=0)) - 1, len(lengths))
        pool = self.pool
        return [pool[s : s + k] for s, k in zip(starts.tolist(), lengths.tolist(), strict=True)]

    def up_to(self, max_length: int, count: int) -> list[str]:
        """Beam's ``nextString``: 3 to ``max_length`` characters, no space at either end."""
        lengths = self.rng.integers(3, max_length, count)
        return [s.strip() or "x" for s in self.exact(lengths)]

    def extra(self, current: int | np.ndarray, average: int, count: int) -> list[str]:
        """Beam's ``nextExtra``: padding that brings the event to ``average`` bytes on average."""
        wanted = np.maximum(average - np.asarray(current), 0) * np.ones(count, dtype=np.int64)
        delta = np.round(wanted * 0.2).astype(np.int64)
        lengths = wanted - delta + np.floor(self.rng.random(count) * 2 * delta).astype(np.int64)
        return self.exact(lengths)


def generate(cfg: NexmarkConfig) -> tuple[list[str], np.ndarray]:
    """The events as JSON lines in event order, with their event times (epoch millis)."""
    rng = np.random.default_rng(cfg.seed)
    strings = _Strings(rng)
    n = np.arange(cfg.events, dtype=np.int64)
    times = cfg.base_time_ms + (n * cfg.inter_event_delay_us) // 1000
    kind = n % DENOMINATOR
    lines: list[str] = [""] * cfg.events
    for index, text in zip(
        *_persons(rng, strings, n[kind < PERSON_PROPORTION], times), strict=True
    ):
        lines[index] = text
    is_auction = (kind >= PERSON_PROPORTION) & (kind < PERSON_PROPORTION + AUCTION_PROPORTION)
    for index, text in zip(*_auctions(rng, strings, n[is_auction], times, cfg), strict=True):
        lines[index] = text
    is_bid = kind >= PERSON_PROPORTION + AUCTION_PROPORTION
    for index, text in zip(*_bids(rng, strings, n[is_bid], times, cfg), strict=True):
        lines[index] = text
    return lines, times


def _persons(
    rng: np.random.Generator, strings: _Strings, n: np.ndarray, times: np.ndarray
) -> tuple[list[int], list[str]]:
    count = len(n)
    ids = (last_person_id(n) + FIRST_PERSON_ID).tolist()
    first = rng.integers(0, len(FIRST_NAMES), count).tolist()
    last = rng.integers(0, len(LAST_NAMES), count).tolist()
    users, domains = strings.up_to(7, count), strings.up_to(5, count)
    cards = rng.integers(0, 10_000, (count, 4)).tolist()
    cities = rng.integers(0, len(US_CITIES), count).tolist()
    states = rng.integers(0, len(US_STATES), count).tolist()
    sizes = np.array([len(u) + len(d) for u, d in zip(users, domains, strict=True)])
    extras = strings.extra(8 + 16 + 8 + sizes + 20, 200, count)
    at = times[n].tolist()
    lines = [
        f'{{"id":{ids[i]},"name":"{FIRST_NAMES[first[i]]} {LAST_NAMES[last[i]]}",'
        f'"emailAddress":"{users[i]}@{domains[i]}.com",'
        f'"creditCard":"{c[0]:04d} {c[1]:04d} {c[2]:04d} {c[3]:04d}",'
        f'"city":"{US_CITIES[cities[i]]}","state":"{US_STATES[states[i]]}",'
        f'"dateTime":{at[i]},"extra":"{extras[i]}"}}'
        for i, c in enumerate(cards)
    ]
    return n.tolist(), lines


def _auctions(
    rng: np.random.Generator,
    strings: _Strings,
    n: np.ndarray,
    times: np.ndarray,
    cfg: NexmarkConfig,
) -> tuple[list[int], list[str]]:
    count = len(n)
    ids = (last_auction_id(n) + FIRST_AUCTION_ID).tolist()
    hot = rng.integers(0, cfg.hot_sellers_ratio, count) > 0
    hot_seller = (last_person_id(n) // HOT_RATIO) * HOT_RATIO
    seller = np.where(hot, hot_seller, _next_person_id(rng, n, cfg)) + FIRST_PERSON_ID
    category = FIRST_CATEGORY_ID + rng.integers(0, NUM_CATEGORIES, count)
    initial = _prices(rng, count)
    reserve = initial + _prices(rng, count)
    at = times[n]
    ahead = (cfg.num_in_flight_auctions * DENOMINATOR) // AUCTION_PROPORTION
    horizon = cfg.base_time_ms + ((n + ahead) * cfg.inter_event_delay_us) // 1000 - at
    expires = at + 1 + _uniform_below(rng, np.maximum(horizon * 2, 1))
    names, descriptions = strings.up_to(20, count), strings.up_to(100, count)
    sizes = np.array([len(a) + len(b) for a, b in zip(names, descriptions, strict=True)])
    extras = strings.extra(8 + sizes + 40, cfg.avg_auction_bytes, count)
    seller, category = seller.tolist(), category.tolist()
    initial, reserve, at, expires = (
        initial.tolist(),
        reserve.tolist(),
        at.tolist(),
        expires.tolist(),
    )
    lines = [
        f'{{"id":{ids[i]},"itemName":"{names[i]}","description":"{descriptions[i]}",'
        f'"initialBid":{initial[i]},"reserve":{reserve[i]},"dateTime":{at[i]},'
        f'"expires":{expires[i]},"seller":{seller[i]},"category":{category[i]},'
        f'"extra":"{extras[i]}"}}'
        for i in range(count)
    ]
    return n.tolist(), lines


def _bids(
    rng: np.random.Generator,
    strings: _Strings,
    n: np.ndarray,
    times: np.ndarray,
    cfg: NexmarkConfig,
) -> tuple[list[int], list[str]]:
    count = len(n)
    hot = rng.integers(0, cfg.hot_auction_ratio, count) > 0
    hot_auction = (last_auction_id(n) // HOT_RATIO) * HOT_RATIO
    auction = np.where(hot, hot_auction, _next_auction_id(rng, n, cfg)) + FIRST_AUCTION_ID
    hot = rng.integers(0, cfg.hot_bidders_ratio, count) > 0
    hot_bidder = (last_person_id(n) // HOT_RATIO) * HOT_RATIO + 1
    bidder = np.where(hot, hot_bidder, _next_person_id(rng, n, cfg)) + FIRST_PERSON_ID
    price = _prices(rng, count)
    extras = strings.extra(32, cfg.avg_bid_bytes, count)
    auction, bidder, price, at = (
        auction.tolist(),
        bidder.tolist(),
        price.tolist(),
        times[n].tolist(),
    )
    lines = [
        f'{{"auction":{auction[i]},"bidder":{bidder[i]},"price":{price[i]},'
        f'"dateTime":{at[i]},"extra":"{extras[i]}"}}'
        for i in range(count)
    ]
    return n.tolist(), lines


def write_file(cfg: NexmarkConfig, path: str | Path) -> int:
    """Write the events as JSON lines to ``path``; the number written."""
    lines, _ = generate(cfg)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines))
        f.write("\n")
    return len(lines)


def produce_kafka(
    cfg: NexmarkConfig, bootstrap: str, topic: str, *, partitions: Sequence[int] = (0,)
) -> int:
    """Produce the events to a Kafka topic, each with its event time as the record timestamp
    (so a ``kafka`` source's ``event_time: timestamp`` sees Nexmark's times); round-robin over
    ``partitions``. The number delivered, or an error when any was not."""
    from confluent_kafka import Producer

    lines, times = generate(cfg)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 20,
            "enable.idempotence": True,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    failed: list[Any] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            failed.append(error)

    for i, (line, at) in enumerate(zip(lines, times.tolist(), strict=True)):
        while True:
            try:
                producer.produce(
                    topic,
                    line.encode("ascii"),
                    partition=partitions[i % len(partitions)],
                    timestamp=at,
                    on_delivery=delivered,
                )
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(120)
    if left or failed:
        raise RuntimeError(f"{left} events left unsent, {len(failed)} failed: {failed[:3]}")
    return len(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser("nexmark", description="generate Nexmark events (JSON lines)")
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--inter-event-delay-us", type=int, default=NexmarkConfig.inter_event_delay_us)
    p.add_argument("--out", help="JSON lines file to write")
    p.add_argument("--kafka", help="bootstrap servers to produce to (with --topic)")
    p.add_argument("--topic")
    args = p.parse_args(argv)
    cfg = NexmarkConfig(args.events, args.seed, args.inter_event_delay_us)
    began = time.perf_counter()
    if args.out:
        write_file(cfg, args.out)
    if args.kafka:
        if not args.topic:
            p.error("--kafka needs --topic")
        produce_kafka(cfg, args.kafka, args.topic)
    if not (args.out or args.kafka):
        p.error("give --out and/or --kafka")
    print(f"{args.events} events in {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
