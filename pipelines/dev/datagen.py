"""Realistic orders/customers data with deliberate defects, for the sample data and benchmarks.

Deterministic for a seed. A configurable fraction of orders is bad in one of several ways a
real feed goes bad: unparseable amounts, negative amounts, malformed e-mails, unknown status,
missing customer, duplicate order ids, shipping before ordering, unknown customers. Written
through plain pyarrow/fastavro (not the project's writers) so the sample files are
independent of the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa

STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"]
CURRENCIES = ["USD", "EUR", "GBP"]
COUNTRIES = ["US", "GB", "DE", "FR", "NL", "ES", "IT", "CA"]
SEGMENTS = ["consumer", "small_business", "enterprise"]
FIRST = [
    "ana",
    "ben",
    "chloe",
    "dev",
    "emma",
    "farid",
    "gita",
    "hugo",
    "ines",
    "jonas",
    "kai",
    "lena",
]
LAST = ["smith", "garcia", "muller", "rossi", "dubois", "jansen", "khan", "silva", "novak", "berg"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.net"]

DEFECTS = (
    "amount_not_a_number",
    "negative_amount",
    "bad_email",
    "unknown_status",
    "missing_customer",
    "duplicate_order_id",
    "ships_before_order",
    "unknown_customer",
)


def customers(n: int = 200, seed: int = 7) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = [f"C{i:05d}" for i in range(1, n + 1)]
    names = [
        f"{FIRST[i % len(FIRST)].title()} {LAST[(i * 7) % len(LAST)].title()}" for i in range(n)
    ]
    return pa.table(
        {
            "customer_id": ids,
            "name": names,
            "segment": [SEGMENTS[i] for i in rng.integers(0, len(SEGMENTS), n)],
            "loyalty_tier": [["bronze", "silver", "gold"][i] for i in rng.integers(0, 3, n)],
            "lifetime_value": np.round(rng.lognormal(8, 2, n), 2),
            "phone": [f"+1-555-{rng.integers(1000, 9999)}" for _ in range(n)],
        }
    )


def orders(
    n: int,
    *,
    seed: int = 42,
    bad_fraction: float = 0.04,
    n_customers: int = 200,
    id_prefix: str = "O",
) -> pa.Table:
    """``n`` orders; ``bad_fraction`` of them carry exactly one defect from DEFECTS.

    ``amount`` is a string column when any amount is unparseable (as a JSON feed would
    deliver it), otherwise float64.
    """
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    cust = rng.integers(1, n_customers + 1, n)
    first = rng.integers(0, len(FIRST), n)
    last = rng.integers(0, len(LAST), n)
    dom = rng.integers(0, len(DOMAINS), n)
    day = rng.integers(0, 120, n)
    order_date = np.datetime64("2026-01-01") + day.astype("timedelta64[D]")
    ship_days = rng.integers(1, 10, n)
    ship_date = order_date + ship_days.astype("timedelta64[D]")
    amount = np.round(rng.gamma(2.0, 60.0, n) + 1, 2)
    data = {
        "order_id": [f"{id_prefix}{i:08d}" for i in idx],
        "customer_id": [f"C{c:05d}" for c in cust],
        "email": [
            f"{FIRST[a]}.{LAST[b]}{c % 97}@{DOMAINS[d]}"
            for a, b, c, d in zip(first, last, cust, dom, strict=True)
        ],
        "order_date": [str(d) for d in order_date],
        "ship_date": [str(d) for d in ship_date],
        "status": [STATUSES[s] for s in rng.integers(0, len(STATUSES), n)],
        "currency": [CURRENCIES[c] for c in rng.integers(0, len(CURRENCIES), n)],
        "amount": amount.tolist(),
        "quantity": rng.integers(1, 12, n).tolist(),
        "country": [COUNTRIES[c] for c in rng.integers(0, len(COUNTRIES), n)],
        "card_number": [f"4{rng.integers(10**14, 10**15 - 1)}" for _ in range(n)],
    }
    bad = rng.random(n) < bad_fraction
    kinds = rng.integers(0, len(DEFECTS), n)
    text_amounts = False
    for i in np.flatnonzero(bad):
        kind = DEFECTS[kinds[i]]
        if kind == "amount_not_a_number":
            data["amount"][i] = "n/a"
            text_amounts = True
        elif kind == "negative_amount":
            data["amount"][i] = -data["amount"][i]
        elif kind == "bad_email":
            data["email"][i] = data["email"][i].replace("@", " at ")
        elif kind == "unknown_status":
            data["status"][i] = "lost_in_space"
        elif kind == "missing_customer":
            data["customer_id"][i] = None
        elif kind == "duplicate_order_id" and i > 0:
            data["order_id"][i] = data["order_id"][i - 1]
        elif kind == "ships_before_order":
            data["ship_date"][i] = str(order_date[i] - np.timedelta64(3, "D"))
        elif kind == "unknown_customer":
            data["customer_id"][i] = "C99999"
    if text_amounts:
        data["amount"] = [str(a) if not isinstance(a, str) else a for a in data["amount"]]
    return pa.table(data)


def event_times(n: int, *, seed: int = 42, per_second: float = 100.0) -> pa.Array:
    """When ``n`` orders were placed: a stream of about ``per_second`` orders a second from
    2026-01-01 (exponential gaps), each shifted by up to 2 s so that a few arrive out of order.

    Its own random stream, so adding it to :func:`orders` of the same seed changes no value
    there. Timestamps in microseconds, UTC.
    """
    rng = np.random.default_rng([seed, 1])
    arrival = np.cumsum(rng.exponential(1e6 / per_second, n)) + rng.uniform(-2e6, 2e6, n)
    start = np.datetime64("2026-01-01T00:00:00", "us").astype(np.int64)
    return pa.array(start + arrival.astype(np.int64), pa.timestamp("us", tz="UTC"))


def write_jsonl(table: pa.Table, path: Path, extra_lines: dict[int, str] | None = None) -> None:
    """JSON lines; ``extra_lines`` inserts raw (possibly broken) lines before row indexes."""
    extra_lines = extra_lines or {}
    with path.open("w", encoding="utf-8") as out:
        for i, row in enumerate(table.to_pylist()):
            if i in extra_lines:
                out.write(extra_lines[i] + "\n")
            out.write(json.dumps(row) + "\n")


def write_csv(table: pa.Table, path: Path, extra_lines: dict[int, str] | None = None) -> None:
    import csv

    extra_lines = extra_lines or {}
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(table.column_names)
        for i, row in enumerate(table.to_pylist()):
            if i in extra_lines:
                out.write(extra_lines[i] + "\r\n")
            writer.writerow(["" if v is None else v for v in row.values()])


def write_parquet(table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, path, compression="zstd", row_group_size=row_group_size)


def write_avro(table: pa.Table, path: Path) -> None:
    import fastavro

    def avro_type(t: pa.DataType) -> object:
        if pa.types.is_int64(t):
            return "long"
        if pa.types.is_floating(t):
            return "double"
        return "string"

    schema = {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": f.name, "type": ["null", avro_type(f.type)], "default": None}
            for f in table.schema
        ],
    }
    with path.open("wb") as out:
        fastavro.writer(out, fastavro.parse_schema(schema), table.to_pylist(), codec="deflate")


def write_sample_data(directory: Path) -> None:
    """The sample dataset shipped in ``templates/sample_data`` (regenerate with
    ``python -m pipelines.dev.datagen templates/sample_data``)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(customers(), directory / "customers.csv")
    parts = [orders(500, seed=i, id_prefix=f"O{i}-") for i in (1, 2, 3, 4)]
    write_jsonl(
        parts[0],
        directory / "orders_2026_01.jsonl",
        extra_lines={
            17: '{"order_id": "O1BROKEN", "amount": 12.5, ',  # truncated record
            230: "not json at all",
            411: '["an", "array", "not", "an", "object"]',
        },
    )
    write_csv(
        parts[1],
        directory / "orders_2026_02.csv",
        extra_lines={
            42: "O2EXTRA01,C00001,x@example.com,2026-02-01,2026-02-03,paid,USD,10.0,1,US,4111,EXTRA,COLS",
            300: "O2SHORT01,C00002",
        },
    )
    write_parquet(parts[2], directory / "orders_2026_03.parquet")
    write_avro(parts[3], directory / "orders_2026_04.avro")


if __name__ == "__main__":
    import sys

    write_sample_data(Path(sys.argv[1] if len(sys.argv) > 1 else "templates/sample_data"))
