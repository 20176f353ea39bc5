"""Sample market data, positions and reference data for the ``investment_data`` template.

Deterministic (a seeded random walk), written in each provider's own format with plain Python
(not the project's readers or writers), so the sample files are independent of the code that
reads them. Each defect is placed by hand so the tests can count it:

- Yahoo ``MSFT.csv``: the 2026-01-20 row twice (duplicate (symbol, ts));
  ``AAPL.csv``: volume 0 on 2026-02-10; ``JPM.csv``: ``null`` close on 2026-03-02.
- Alpha Vantage ``JNJ.json``: a negative close on 2026-02-03.
- Bloomberg drop: an unknown security (return code 10, rejected when read), a quote for XYZ
  (not in the instrument master), a stale SIE quote from 2025-11-03, and HSBA quoted in USD
  on 2026-01-14 (the master says GBP).
- Positions: a zero price for ACC-20001's JNJ on 2026-02-17.

Run ``python -m pipelines.dev.investment_datagen [DIR]`` (default: the template's folder).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
import sys
from pathlib import Path

START, END = dt.date(2026, 1, 5), dt.date(2026, 3, 27)
AS_OF = END

INSTRUMENTS = [
    # symbol, name, sector, asset_class, currency, exchange, provider, bloomberg id, start price
    ("AAPL", "Apple Inc", "Technology", "equity", "USD", "XNAS", "yahoo", "", 190.0),
    ("MSFT", "Microsoft Corp", "Technology", "equity", "USD", "XNAS", "yahoo", "", 410.0),
    ("JPM", "JPMorgan Chase & Co", "Financials", "equity", "USD", "XNYS", "yahoo", "", 175.0),
    ("XOM", "Exxon Mobil Corp", "Energy", "equity", "USD", "XNYS", "yahoo", "", 105.0),
    (
        "JNJ",
        "Johnson & Johnson",
        "Health Care",
        "equity",
        "USD",
        "XNYS",
        "alpha_vantage",
        "",
        158.0,
    ),
    ("SAP", "SAP SE", "Technology", "equity", "EUR", "XETR", "alpha_vantage", "", 165.0),
    (
        "SIE",
        "Siemens AG",
        "Industrials",
        "equity",
        "EUR",
        "XETR",
        "bloomberg",
        "SIE GY Equity",
        172.0,
    ),
    (
        "HSBA",
        "HSBC Holdings",
        "Financials",
        "equity",
        "GBP",
        "XLON",
        "bloomberg",
        "HSBA LN Equity",
        6.4,
    ),
    (
        "NESN",
        "Nestle SA",
        "Consumer Staples",
        "equity",
        "CHF",
        "XSWX",
        "bloomberg",
        "NESN SW Equity",
        96.0,
    ),
    (
        "6758",
        "Sony Group Corp",
        "Technology",
        "equity",
        "JPY",
        "XTKS",
        "bloomberg",
        "6758 JT Equity",
        13100.0,
    ),
]
FX_START = {"USD": 1.0, "EUR": 1.09, "GBP": 1.27, "CHF": 1.13, "JPY": 0.0068}
RESTRICTED = [("XOM", "ESG exclusion list", "2026-01-01")]
HOLDINGS = {
    # account -> portfolio and (symbol, quantity)
    "ACC-10001": ("GROWTH", [("AAPL", 42_000), ("MSFT", 6_000), ("SAP", 9_000)]),
    "ACC-10002": ("GROWTH", [("AAPL", 11_000), ("6758", 30_000)]),
    "ACC-20001": ("INCOME", [("JNJ", 20_000), ("JPM", 14_000), ("XOM", 18_000), ("NESN", 25_000)]),
    "ACC-30001": ("GLOBAL", [("SIE", 12_000), ("HSBA", 300_000), ("NESN", 8_000)]),
    "ACC-30002": ("GLOBAL", [("6758", 50_000), ("MSFT", 2_500), ("JPM", 4_000)]),
}


def business_days() -> list[dt.date]:
    days, day = [], START
    while day <= END:
        if day.weekday() < 5:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def bars(rng: random.Random, start: float, days: list[dt.date]) -> dict[dt.date, tuple]:
    """(open, high, low, close, volume) per day: a random walk of closes, 1.6 % daily vol."""
    out, close = {}, start
    for day in days:
        open_ = close * (1 + rng.gauss(0, 0.004))
        close = close * (1 + rng.gauss(0.0004, 0.016))
        high = max(open_, close) * (1 + abs(rng.gauss(0, 0.005)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, 0.005)))
        decimals = 0 if start > 1000 else 2
        volume = rng.randrange(2_000_000, 60_000_000)
        out[day] = tuple(round(v, decimals) for v in (open_, high, low, close)) + (volume,)
    return out


def write_all(folder: Path) -> None:
    rng = random.Random(20260327)
    days = business_days()
    series = {i[0]: bars(rng, i[8], days) for i in INSTRUMENTS}
    folder.mkdir(parents=True, exist_ok=True)
    _reference(folder, rng, days)
    _yahoo(folder / "yahoo", series, days)
    _alpha_vantage(folder / "alpha_vantage", series, days)
    _bloomberg(folder / "bloomberg", series, days)
    _positions(folder, series, days)


def _reference(folder: Path, rng: random.Random, days: list[dt.date]) -> None:
    with open(folder / "instruments.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", "name", "sector", "asset_class", "currency", "exchange"])
        for i in INSTRUMENTS:
            w.writerow(i[:6])
    with open(folder / "restricted.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["symbol", "restriction", "restricted_since"])
        w.writerows(RESTRICTED)
    with open(folder / "fx_rates.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "currency", "usd_rate"])
        rates = dict(FX_START)
        for day in days:
            for ccy in rates:
                if ccy != "USD":
                    rates[ccy] *= 1 + rng.gauss(0, 0.003)
                w.writerow([day.isoformat(), ccy, f"{rates[ccy]:.6g}"])


def _yahoo(folder: Path, series: dict, days: list[dt.date]) -> None:
    folder.mkdir(exist_ok=True)
    for symbol in ("AAPL", "MSFT", "JPM", "XOM"):
        with open(folder / f"{symbol}.csv", "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"])
            for day in days:
                o, h, lo, c, v = series[symbol][day]
                if symbol == "AAPL" and day == dt.date(2026, 2, 10):
                    v = 0
                close = "null" if symbol == "JPM" and day == dt.date(2026, 3, 2) else f"{c:.6f}"
                row = [day.isoformat(), f"{o:.6f}", f"{h:.6f}", f"{lo:.6f}", close, close, v]
                w.writerow(row)
                if symbol == "MSFT" and day == dt.date(2026, 1, 20):
                    w.writerow(row)


def _alpha_vantage(folder: Path, series: dict, days: list[dt.date]) -> None:
    folder.mkdir(exist_ok=True)
    for symbol in ("JNJ", "SAP"):
        points = {}
        for day in reversed(days):  # newest first, as the API answers
            o, h, lo, c, v = series[symbol][day]
            if symbol == "JNJ" and day == dt.date(2026, 2, 3):
                c = -c
            points[day.isoformat()] = {
                "1. open": f"{o:.4f}",
                "2. high": f"{h:.4f}",
                "3. low": f"{lo:.4f}",
                "4. close": f"{c:.4f}",
                "5. volume": str(v),
            }
        doc = {
            "Meta Data": {
                "1. Information": "Daily Prices (open, high, low, close) and Volumes",
                "2. Symbol": symbol,
                "3. Last Refreshed": days[-1].isoformat(),
                "4. Output Size": "Compact",
                "5. Time Zone": "US/Eastern",
            },
            "Time Series (Daily)": points,
        }
        (folder / f"{symbol}.json").write_text(json.dumps(doc, indent=4) + "\n")


def _bloomberg(folder: Path, series: dict, days: list[dt.date]) -> None:
    folder.mkdir(exist_ok=True)
    fields = ["PX_OPEN", "PX_HIGH", "PX_LOW", "PX_LAST", "PX_VOLUME", "CRNCY"]
    lines = [
        "START-OF-FILE",
        "PROGRAMNAME=gethistory",
        "DATERANGE=20260105|20260327",
        "FIRMNAME=dl000000",
        "START-OF-FIELDS",
        *fields,
        "END-OF-FIELDS",
        "TIMESTARTED=Fri Mar 27 22:15:03 GMT 2026",
        "START-OF-DATA",
    ]
    n = len(fields)
    for i in INSTRUMENTS:
        if i[6] != "bloomberg":
            continue
        symbol, currency, ident = i[0], i[4], i[7]
        if symbol == "SIE":
            o, h, lo, c, v = series[symbol][days[0]]
            lines.append(f"{ident}|0|{n}|20251103|{o}|{h}|{lo}|{c}|{v}|{currency}|")
        for day in days:
            o, h, lo, c, v = series[symbol][day]
            ccy = "USD" if symbol == "HSBA" and day == dt.date(2026, 1, 14) else currency
            lines.append(f"{ident}|0|{n}|{day:%Y%m%d}|{o}|{h}|{lo}|{c}|{v}|{ccy}|")
    lines.append(f"XYZ US Equity|0|{n}|20260105|10.1|10.5|9.9|10.2|100000|USD|")
    lines.append(f"ZZZZ US Equity|10|{n}|")
    lines += ["END-OF-DATA", "TIMEFINISHED=Fri Mar 27 22:15:09 GMT 2026", "END-OF-FILE"]
    (folder / "gethistory_20260327.out").write_text("\n".join(lines) + "\n")


def _positions(folder: Path, series: dict, days: list[dt.date]) -> None:
    currency = {i[0]: i[4] for i in INSTRUMENTS}
    with open(folder / "positions.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(
            ["as_of_date", "account_id", "portfolio", "symbol", "quantity", "price", "currency"]
        )
        for day in days:
            for account, (portfolio, held) in HOLDINGS.items():
                for symbol, quantity in held:
                    price = series[symbol][day][3]
                    if account == "ACC-20001" and symbol == "JNJ" and day == dt.date(2026, 2, 17):
                        price = 0
                    w.writerow(
                        [
                            day.isoformat(),
                            account,
                            portfolio,
                            symbol,
                            quantity,
                            price,
                            currency[symbol],
                        ]
                    )


if __name__ == "__main__":
    here = Path(__file__).resolve().parents[2] / "templates" / "sample_data" / "investment"
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else here)
