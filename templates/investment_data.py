"""The ``investment_data`` template: market data from Bloomberg, Yahoo and Alpha Vantage files
(or a Kafka topic), validated against an instrument master, analysed in event-time windows
(performance, risk, compliance), masked, and delivered as Parquet datasets, an alerts output
and notifications by e-mail, Slack or Teams.

Parameter values follow the workflow SDK users come from; each maps to steps of the spec:

- ``data_sources``: one file source per provider, each read by its own format adapter
  (``yahoo_csv``, ``alpha_vantage_json``, ``bloomberg_dl`` in :mod:`connectors.files`) into the
  same quote columns; with ``alpha_vantage_api_key``, Alpha Vantage is read from its API (the
  ``alpha_vantage`` source, same adapter). In streaming mode quotes come from one Kafka topic and the list is the
  providers whose quotes are accepted (others are dead-lettered).
- ``analysis_types``: ``performance`` (weekly OHLC, VWAP from the typical price, window return
  per instrument), ``risk`` (exposure by portfolio, sector and currency in USD; portfolio daily
  P&L and, over a sliding window of trading days, historical VaR 95/99 % and volatility),
  ``compliance`` (position limit, restricted list and concentration on the ``as_of`` day).
- ``notification_channels``: one ``notify`` sink per channel (a digest of the run's alerts).

Trading days: the risk windows run on a clock of weekdays (Monday 2000-01-03 = day 0, a
weekend skipped), so "20 days" means 20 trading days and Friday -> Monday is one day. The
portfolio P&L is the change of its marked-to-market value between consecutive snapshots.
The defaults run on ``templates/sample_data/investment`` (``python -m
pipelines.dev.investment_datagen`` writes it again).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pipelines.spec import ParameterSpec, PipelineSpec
from templates.base import SAMPLE_DATA, pipeline_spec, rejections_report

DATA = SAMPLE_DATA / "investment"
SOURCES = ["bloomberg", "yahoo", "alpha_vantage"]
ANALYSES = ["performance", "risk", "compliance"]
CHANNELS = ["email", "slack", "teams"]
MODES = ["batch", "streaming"]
FORMATS = {"yahoo": "yahoo_csv", "alpha_vantage": "alpha_vantage_json", "bloomberg": "bloomberg_dl"}
CURRENCIES = ["USD", "EUR", "GBP", "CHF", "JPY", "CAD", "AUD", "HKD", "SEK", "NOK", "DKK", "SGD"]
CLOCK_EPOCH = "2000-01-03"  # a Monday: trading day 0
DAY = 86_400.0
SQRT_252 = 15.874507866387544  # daily -> annualised volatility

PARAMETERS = {
    "data_sources": ParameterSpec(
        type="list",
        default=SOURCES,
        description=f"Market-data providers; supported: {', '.join(SOURCES)}.",
    ),
    "analysis_types": ParameterSpec(
        type="list",
        default=ANALYSES,
        description=f"Analyses to run; supported: {', '.join(ANALYSES)}.",
    ),
    "notification_channels": ParameterSpec(
        type="list",
        default=[],
        description=f"Where breach alerts are sent; supported: {', '.join(CHANNELS)} "
        "(each needs its settings below). Alerts are always written to the alerts output.",
    ),
    "mode": ParameterSpec(
        default="batch",
        description="batch: provider files; streaming: quotes and positions from Kafka, "
        "alerts to a Kafka topic too.",
    ),
    "yahoo_files": ParameterSpec(default=str(DATA / "yahoo" / "*.csv")),
    "alpha_vantage_files": ParameterSpec(default=str(DATA / "alpha_vantage" / "*.json")),
    "bloomberg_files": ParameterSpec(default=str(DATA / "bloomberg" / "*.out")),
    "alpha_vantage_api_key": ParameterSpec(
        type="secret",
        description="With a key (a secret reference), Alpha Vantage is read from its API "
        "(TIME_SERIES_DAILY of alpha_vantage_symbols) instead of alpha_vantage_files.",
    ),
    "alpha_vantage_symbols": ParameterSpec(type="list", default=["JNJ", "SAP"]),
    "alpha_vantage_url": ParameterSpec(default="https://www.alphavantage.co/query"),
    "instruments": ParameterSpec(
        default=str(DATA / "instruments.csv"),
        description="Instrument master: symbol, name, sector, asset_class, currency, exchange.",
    ),
    "positions": ParameterSpec(
        default=str(DATA / "positions.csv"),
        description="Daily position snapshots: as_of_date, account_id, portfolio, symbol, "
        "quantity, price, currency.",
    ),
    "fx_rates": ParameterSpec(
        default=str(DATA / "fx_rates.csv"), description="date, currency, usd_rate."
    ),
    "restricted_list": ParameterSpec(
        default=str(DATA / "restricted.csv"), description="symbol, restriction, restricted_since."
    ),
    "as_of": ParameterSpec(default="2026-03-27", description="Business date (YYYY-MM-DD)."),
    "max_quote_age_days": ParameterSpec(
        type="integer", default=90, description="Quotes older than this before as_of are stale."
    ),
    "performance_window_days": ParameterSpec(
        type="integer", default=7, description="Performance bars: 7 = weeks from Monday."
    ),
    "var_window_days": ParameterSpec(
        type="integer", default=20, description="Trading days of P&L per VaR estimate."
    ),
    "var_step_days": ParameterSpec(
        type="integer", default=5, description="Trading days between VaR estimates."
    ),
    "var_limit": ParameterSpec(
        type="number", default=0.03, description="Alert when 1-day VaR 99% exceeds this share."
    ),
    "position_limit_usd": ParameterSpec(type="number", default=5_000_000),
    "concentration_limit": ParameterSpec(
        type="number", default=0.25, description="Largest position's share of its portfolio."
    ),
    "smtp_host": ParameterSpec(default="localhost"),
    "smtp_port": ParameterSpec(type="integer", default=25),
    "email_from": ParameterSpec(default="beamwright@localhost"),
    "email_to": ParameterSpec(type="list", default=[]),
    "slack_webhook_url": ParameterSpec(
        type="secret", description="Slack incoming-webhook URL (a secret reference)."
    ),
    "teams_webhook_url": ParameterSpec(
        type="secret", description="Teams Workflows webhook URL (a secret reference)."
    ),
    "kafka_bootstrap_servers": ParameterSpec(default="localhost:9092"),
    "prices_topic": ParameterSpec(default="market.quotes"),
    "positions_topic": ParameterSpec(default="portfolio.positions"),
    "alerts_topic": ParameterSpec(default="investment.alerts"),
    "output_dir": ParameterSpec(default="beamwright-output/investment_data"),
    "pseudonym_key_file": ParameterSpec(
        default="beamwright-output/secrets/pseudonym.key",
        description="Key for pseudonymising account ids; created (random, 0600) if missing.",
    ),
    "pseudonym_key": ParameterSpec(
        type="secret", description="The pseudonymisation key from a secret store."
    ),
    "error_threshold": ParameterSpec(type="number", default=0.05),
    "batch_size": ParameterSpec(type="integer", default=10_000),
}


class TemplateParameterError(ValueError):
    """A parameter value the template cannot serve; the message lists what it can."""


def _check_values(values: Mapping[str, Any]) -> None:
    for name, supported in (
        ("data_sources", SOURCES),
        ("analysis_types", ANALYSES),
        ("notification_channels", CHANNELS),
        ("mode", MODES),
    ):
        given = values[name] if isinstance(values[name], list) else [values[name]]
        for value in given:
            if value not in supported:
                raise TemplateParameterError(
                    f"parameters.{name}: {value!r} is not supported; supported: "
                    f"{', '.join(supported)}"
                )
    if not values["data_sources"] and "performance" in values["analysis_types"]:
        raise TemplateParameterError("parameters.data_sources: performance needs a provider")
    if not values["analysis_types"]:
        raise TemplateParameterError(
            f"parameters.analysis_types: choose at least one of {', '.join(ANALYSES)}"
        )
    alerting = {"risk", "compliance"} & set(values["analysis_types"])
    if values["notification_channels"] and not alerting:
        raise TemplateParameterError(
            "parameters.notification_channels: alerts come from risk and compliance; "
            "add one of them to analysis_types"
        )
    if "email" in values["notification_channels"] and not values["email_to"]:
        raise TemplateParameterError("parameters.email_to: email notifications need recipients")
    for channel in ("slack", "teams"):
        if channel in values["notification_channels"] and not values[f"{channel}_webhook_url"]:
            raise TemplateParameterError(
                f"parameters.{channel}_webhook_url: {channel} notifications need the webhook "
                "URL as a secret reference (env:VAR, file:/path or a store)"
            )
    try:
        dt.date.fromisoformat(values["as_of"])
    except ValueError:
        raise TemplateParameterError(
            f"parameters.as_of: {values['as_of']!r} is not a date (YYYY-MM-DD)"
        ) from None


def trading_day(day: str) -> int:
    """The trading-day clock of ``day`` (weekdays since CLOCK_EPOCH), as the risk steps'
    expression computes it (a window over clock values ``[s, s + n)`` covers n weekdays)."""
    days = (dt.date.fromisoformat(day) - dt.date.fromisoformat(CLOCK_EPOCH)).days
    return days - 2 * (days // 7)


# --------------------------------------------------------------------------- sources


def _sources(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    analyses = set(values["analysis_types"])
    streaming = values["mode"] == "streaming"
    sources: list[dict[str, Any]] = []
    if streaming:
        sources.append(_kafka("quotes_stream", values["prices_topic"], values))
    else:
        for provider in SOURCES:
            if provider == "alpha_vantage" and values["alpha_vantage_api_key"]:
                if provider in values["data_sources"]:
                    sources.append(
                        {
                            "name": provider,
                            "type": "alpha_vantage",
                            "symbols": list(values["alpha_vantage_symbols"]),
                            "api_key": values["alpha_vantage_api_key"],
                            "base_url": values["alpha_vantage_url"],
                        }
                    )
            elif provider in values["data_sources"]:
                path = values[f"{provider}_files"]
                sources.append(
                    {"name": provider, "type": "file", "path": path, "format": FORMATS[provider]}
                )
    sources.append({"name": "instruments", "type": "file", "path": values["instruments"]})
    if analyses & {"risk", "compliance"}:
        if streaming:
            sources.append(_kafka("positions", values["positions_topic"], values))
        else:
            sources.append({"name": "positions", "type": "file", "path": values["positions"]})
        sources.append({"name": "fx_rates", "type": "file", "path": values["fx_rates"]})
    if "compliance" in analyses:
        sources.append({"name": "restricted", "type": "file", "path": values["restricted_list"]})
    return sources


def _kafka(name: str, topic: str, values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "type": "kafka",
        "bootstrap_servers": values["kafka_bootstrap_servers"],
        "topics": topic,
        "group_id": f"beamwright-investment-{name}",
        "value_format": "json",
    }


# --------------------------------------------------------------------------- market data


def _quote_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    streaming = values["mode"] == "streaming"
    providers = (
        ["quotes_stream"] if streaming else [s for s in SOURCES if s in values["data_sources"]]
    )
    cutoff = dt.date.fromisoformat(values["as_of"]) - dt.timedelta(values["max_quote_age_days"])
    positive = [
        {"id": f"positive_{f}", "rule": "min", "field": f, "min": 0, "exclusive": True}
        for f in ("open", "high", "low", "close", "volume")
    ]
    steps: list[dict[str, Any]] = [
        {
            "name": "quote_keys",
            "type": "map",
            "input": providers,
            "description": "The (symbol, timestamp) key duplicates are found by.",
            "derive": {"quote_key": "concat(symbol, '|', ts)"},
        },
        {
            "name": "quote_instruments",
            "type": "lookup",
            "description": "Known symbols only: sector, currency and exchange from the master.",
            "lookup": "instruments",
            "on": "symbol",
            "fields": ["sector", "currency", "exchange"],
            "on_missing": "reject",
        },
        {
            "name": "validate_quotes",
            "type": "validate",
            "description": "Types, positive prices and volumes, currency codes, no duplicate "
            "(symbol, ts), no stale quotes.",
            "fields": {
                "symbol": {"type": "string", "required": True},
                "ts": {"type": "timestamp", "required": True},
                "open": {"type": "float64", "required": True},
                "high": {"type": "float64", "required": True},
                "low": {"type": "float64", "required": True},
                "close": {"type": "float64", "required": True},
                "volume": {"type": "int64", "required": True},
                "currency": {"type": "string", "required": True},
                "quote_currency": {"type": "string"},
                "provider": {"type": "string", "required": True},
                "quote_key": {"type": "string", "required": True},
                "sector": {"type": "string"},
                "exchange": {"type": "string"},
            },
            "additional_fields": "drop",  # one schema, whichever provider a row came from
            "rules": [
                *positive,
                {
                    "id": "currency_code",
                    "rule": "in_set",
                    "field": "currency",
                    "values": CURRENCIES,
                },
                {
                    "id": "currency_matches_master",
                    "rule": "expression",
                    "expr": "quote_currency is null or quote_currency == currency",
                    "message": "quoted in another currency than the instrument master's",
                },
                {
                    "id": "high_low",
                    "rule": "expression",
                    "expr": "high >= low",
                    "message": "high is below low",
                },
                *(
                    # batch: the dedupe step below sees the whole input; a stream, per batch
                    [{"id": "duplicate_quote", "rule": "unique", "field": "quote_key"}]
                    if streaming
                    else []
                ),
                {
                    "id": "stale_quote",
                    "rule": "expression",
                    "expr": f"ts >= '{cutoff.isoformat()}'",
                    "message": f"stale: older than {values['max_quote_age_days']} days before "
                    f"{values['as_of']}",
                },
                {
                    "id": "provider",
                    "rule": "in_set",
                    "field": "provider",
                    "values": list(values["data_sources"]),
                },
            ],
        },
    ]
    if not streaming:
        steps.append(
            {
                "name": "dedupe_quotes",
                "type": "dedupe",
                "description": "One quote per (symbol, ts) across every provider and file.",
                "on": ["symbol", "ts"],
            }
        )
    if "performance" in values["analysis_types"]:
        steps += _performance_steps(values)
    return steps


def _performance_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    days = values["performance_window_days"]
    return [
        {
            "name": "bars",
            "type": "map",
            "description": "Typical price (high + low + close) / 3 and traded value for VWAP.",
            "derive": {
                "typical_price": "(high + low + close) / 3",
                "traded_value": "(high + low + close) / 3 * volume",
            },
        },
        {
            "name": "performance_window",
            "type": "window",
            "description": "OHLC, volume and traded value per instrument and window.",
            "event_time": "ts",
            # Beam's fixed windows start at the Unix epoch (a Thursday): 4 days on is a Monday
            "window": {"type": "fixed", "size": days * DAY, "offset": (4 * DAY) % (days * DAY)},
            "group_by": ["symbol", "currency", "sector"],
            "metrics": {
                "open": "first(open)",
                "high": "max(high)",
                "low": "min(low)",
                "close": "last(close)",
                "volume": "sum(volume)",
                "traded_value": "sum(traded_value)",
                "bars": "count",
            },
        },
        {
            "name": "performance",
            "type": "map",
            "description": "VWAP and the window's return (first open to last close).",
            "derive": {"vwap": "traded_value / volume", "window_return": "close / open - 1"},
            "drop": ["traded_value", "pane_timing", "pane_index"],
        },
    ]


# --------------------------------------------------------------------------- positions


def _position_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    key = values["pseudonym_key"] or {"file": values["pseudonym_key_file"], "generate": True}
    return [
        {
            "name": "validate_positions",
            "type": "validate",
            "input": "positions",
            "description": "Position snapshots: types, positive prices, currency codes.",
            "fields": {
                "as_of_date": {"type": "date", "required": True},
                "account_id": {"type": "string", "required": True, "classification": "PII"},
                "portfolio": {"type": "string", "required": True},
                "symbol": {"type": "string", "required": True},
                "quantity": {"type": "float64", "required": True},
                "price": {"type": "float64", "required": True},
                "currency": {"type": "string", "required": True},
            },
            "rules": [
                {
                    "id": "positive_price",
                    "rule": "min",
                    "field": "price",
                    "min": 0,
                    "exclusive": True,
                },
                {
                    "id": "currency_code",
                    "rule": "in_set",
                    "field": "currency",
                    "values": CURRENCIES,
                },
            ],
        },
        {
            "name": "position_instruments",
            "type": "lookup",
            "description": "Sector and asset class; positions in unknown symbols are rejected.",
            "lookup": "instruments",
            "on": "symbol",
            "fields": ["sector", "asset_class"],
            "on_missing": "reject",
        },
        {
            "name": "position_dates",
            "type": "map",
            "description": "The FX table's key name for the snapshot date.",
            "derive": {"date": "as_of_date"},
        },
        {
            "name": "position_fx",
            "type": "lookup",
            "description": "The day's USD rate of the position's currency.",
            "lookup": "fx_rates",
            "on": ["currency", "date"],
            "fields": ["usd_rate"],
            "cast": {"usd_rate": "float64"},
            "on_missing": "reject",
        },
        {
            "name": "position_values",
            "type": "map",
            "description": "Market value in USD.",
            "derive": {"market_value_usd": "round(quantity * price * usd_rate, 2)"},
            "drop": ["date"],
        },
        {
            "name": "mask_accounts",
            "type": "mask",
            "description": "Account ids pseudonymised before any analysis or output sees them.",
            "fields": [
                {"field": "account_id", "strategy": "pseudonymize", "key": key, "length": 24}
            ],
        },
        {
            "name": "portfolio_daily",
            "type": "window",
            "input": "mask_accounts",
            "description": "Each portfolio's value, largest position and count per day.",
            "event_time": "as_of_date",
            "window": {"type": "fixed", "size": DAY},
            "group_by": ["portfolio"],
            "metrics": {
                "value": "sum(market_value_usd)",
                "largest_position": "max(market_value_usd)",
                "positions": "count",
            },
        },
    ]


def _risk_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    days_since = f"days_between('{CLOCK_EPOCH}', date(window_start))"
    clock = f"to_int(({days_since} - 2 * floor({days_since} / 7)) * 86400000)"
    window_columns = ["window_end", "pane_timing", "pane_index"]
    var_days = values["var_window_days"]
    step = values["var_step_days"]
    return [
        {
            "name": "exposure",
            "type": "window",
            "input": "mask_accounts",
            "description": "Exposure in USD per portfolio, sector and currency per day.",
            "event_time": "as_of_date",
            "window": {"type": "fixed", "size": DAY},
            "group_by": ["portfolio", "sector", "currency"],
            "metrics": {"market_value_usd": "sum(market_value_usd)", "positions": "count"},
        },
        {
            "name": "trading_days",
            "type": "map",
            "input": "portfolio_daily",
            "description": "The snapshot's day and its trading-day clock (weekends skipped).",
            "derive": {"day": "date(window_start)", "trading_clock": clock},
            "drop": ["window_start", *window_columns],
        },
        {
            "name": "daily_pnl_window",
            "type": "window",
            "description": "Each portfolio's value on one trading day and the day before.",
            "event_time": "trading_clock",
            "window": {"type": "sliding", "size": 2 * DAY, "period": DAY},
            "group_by": ["portfolio"],
            "metrics": {
                "previous_value": "first(value)",
                "value": "last(value)",
                "day": "last(day)",
                "days": "count",
                "previous_positions": "first(positions)",
                "positions": "last(positions)",
            },
        },
        {
            "name": "daily_pnl_pairs",
            "type": "filter",
            "description": "Windows holding both days (the first and last hold one), with "
            "as many positions on each: a position dead-lettered on one day would show as a "
            "loss and a gain that never happened.",
            "where": "days == 2 and positions == previous_positions",
        },
        {
            "name": "daily_pnl",
            "type": "map",
            "description": "P&L and return from one day to the next.",
            "rename": {"window_start": "clock"},
            "derive": {
                "pnl": "value - previous_value",
                "daily_return": "(value - previous_value) / previous_value",
            },
            "drop": window_columns,
        },
        {
            "name": "risk_window",
            "type": "window",
            "description": f"Historical VaR and volatility over {var_days} trading days.",
            "event_time": "clock",
            # windows end on as_of: each estimate ends on a day 'var_step_days' apart from it
            "window": {
                "type": "sliding",
                "size": var_days * DAY,
                "period": step * DAY,
                "offset": ((trading_day(values["as_of"]) - var_days) % step) * DAY,
            },
            "group_by": ["portfolio"],
            "metrics": {
                "pnl_p1": "p1(pnl)",
                "pnl_p5": "p5(pnl)",
                "daily_volatility": "stddev(daily_return)",
                "days": "count",
                "from_day": "first(day)",
                "to_day": "last(day)",
                "value": "last(value)",
            },
        },
        {
            "name": "risk_full_windows",
            "type": "filter",
            "description": "Estimates from full windows only.",
            "where": f"days == {var_days}",
        },
        {
            "name": "risk",
            "type": "map",
            "description": "1-day historical VaR (loss not exceeded on 95/99 % of days).",
            "derive": {
                "var_95": "-pnl_p5",
                "var_99": "-pnl_p1",
                "var_99_share": "-pnl_p1 / value",
                "annualised_volatility": f"daily_volatility * {SQRT_252}",
            },
            "drop": ["window_start", *window_columns],
        },
        {
            "name": "var_breaches",
            "type": "filter",
            "description": "The latest estimate over the VaR limit.",
            "where": f"to_day == '{values['as_of']}' and var_99_share > {values['var_limit']}",
        },
        _alert(
            "var_alerts",
            "var_limit",
            "high",
            symbol="null",
            account="null",
            as_of="to_day",
            message=f"concat('1-day VaR 99% of portfolio ', portfolio, ' is ', "
            f"to_string(round(var_99_share * 100, 2)), '% of its value (limit ', "
            f"'{values['var_limit'] * 100:g}', '%)')",
        ),
    ]


def _compliance_steps(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    as_of = values["as_of"]
    limit = values["position_limit_usd"]
    share = values["concentration_limit"]
    return [
        {
            "name": "latest_positions",
            "type": "filter",
            "input": "mask_accounts",
            "description": "Compliance is checked on the as_of snapshot.",
            "where": f"as_of_date == '{as_of}'",
        },
        {
            "name": "restricted_check",
            "type": "lookup",
            "description": "The restriction of a restricted instrument, if any.",
            "lookup": "restricted",
            "on": "symbol",
            "fields": ["restriction"],
            "on_missing": "keep",
        },
        {
            "name": "restricted_breaches",
            "type": "filter",
            "where": "restriction is not null",
        },
        _alert(
            "restricted_alerts",
            "restricted_list",
            "high",
            message="concat('restricted instrument ', symbol, ' (', restriction, ') held in ', "
            "portfolio, ' by account ', account_id)",
        ),
        {
            "name": "limit_breaches",
            "type": "filter",
            "input": "restricted_check",
            "where": f"market_value_usd > {limit}",
        },
        {
            "name": "limit_bands",
            "type": "mask",
            "description": "Alerts show the value's band, not the value.",
            "fields": [_value_band()],
        },
        _alert(
            "limit_alerts",
            "position_limit",
            "medium",
            message=f"concat('position in ', symbol, ' of account ', account_id, ' (', "
            f"portfolio, ') is over the {limit:,.0f} USD limit: ', market_value_usd)",
        ),
        {
            "name": "latest_portfolios",
            "type": "filter",
            "input": "portfolio_daily",
            "where": f"date(window_start) == '{as_of}' and largest_position / value > {share}",
        },
        _alert(
            "concentration_alerts",
            "concentration",
            "medium",
            symbol="null",
            account="null",
            as_of="date(window_start)",
            message="concat('largest position of portfolio ', portfolio, ' is ', "
            "to_string(round(largest_position / value * 100, 1)), '% of its value (limit "
            f"{share * 100:g}%)')",
        ),
    ]


def _alert(
    name: str,
    kind: str,
    severity: str,
    *,
    message: str,
    symbol: str = "symbol",
    account: str = "account_id",
    as_of: str = "as_of_date",
) -> dict[str, Any]:
    """A map step turning breach rows into alert rows (the same columns for every kind)."""
    return {
        "name": name,
        "type": "map",
        "description": f"{kind} breaches as alerts.",
        "derive": {
            "alert_type": f"'{kind}'",
            "severity": f"'{severity}'",
            "alert_symbol": f"to_string({symbol})",
            "alert_account": f"to_string({account})",
            "alert_date": f"date({as_of})",
            "message": message,
        },
        "select": [
            "alert_type",
            "severity",
            "portfolio",
            "alert_symbol",
            "alert_account",
            "alert_date",
            "message",
        ],
    }


def _value_band() -> dict[str, Any]:
    return {
        "field": "market_value_usd",
        "strategy": "bucket",
        "boundaries": [1_000_000, 10_000_000, 100_000_000],
        "prefix": "$",
    }


# --------------------------------------------------------------------------- sinks


def _sinks(values: Mapping[str, Any], alert_steps: list[str]) -> list[dict[str, Any]]:
    out = values["output_dir"].rstrip("/")
    analyses = values["analysis_types"]
    streaming = values["mode"] == "streaming"
    sinks: list[dict[str, Any]] = [
        _parquet("quotes", "validate_quotes" if streaming else "dedupe_quotes", f"{out}/quotes"),
    ]
    if "performance" in analyses:
        sinks.append(_parquet("performance_out", "performance", f"{out}/performance"))
    if analyses != ["performance"]:
        sinks.append(_parquet("positions_out", "position_bands", f"{out}/positions"))
    if "risk" in analyses:
        sinks.append(_parquet("exposure_out", "exposure", f"{out}/exposure"))
        sinks.append(_parquet("risk_out", "risk", f"{out}/risk"))
    if alert_steps:
        sinks.append(_parquet("alerts_out", "alerts", f"{out}/alerts"))
        if values["mode"] == "streaming":
            sinks.append(
                {
                    "name": "alerts_topic",
                    "type": "kafka",
                    "input": "alerts",
                    "bootstrap_servers": values["kafka_bootstrap_servers"],
                    "topic": values["alerts_topic"],
                }
            )
        sinks += _notify_sinks(values)
    sinks.append(rejections_report("rejections", f"{out}/reports/rejections_by_rule.csv"))
    return sinks


def _parquet(name: str, step: str, path: str) -> dict[str, Any]:
    return {"name": name, "type": "file", "input": step, "path": path, "format": "parquet"}


def _notify_sinks(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    title = f"investment_data alerts for {values['as_of']}"
    sinks = []
    for channel in values["notification_channels"]:
        sink: dict[str, Any] = {
            "name": f"notify_{channel}",
            "type": "notify",
            "input": "alerts",
            "channel": channel,
            "title": title,
        }
        if channel == "email":
            sink |= {
                "smtp_host": values["smtp_host"],
                "smtp_port": values["smtp_port"],
                "sender": values["email_from"],
                "to": list(values["email_to"]),
            }
        else:
            sink["url"] = values[f"{channel}_webhook_url"]
        sinks.append(sink)
    return sinks


# --------------------------------------------------------------------------- the template


class InvestmentDataTemplate:
    name = "investment_data"
    version = "1.0"
    description = (
        "Market data from Bloomberg/Yahoo/Alpha Vantage (files or Kafka) validated against an "
        "instrument master; performance, risk (VaR, exposure) and compliance in event-time "
        "windows; masked Parquet datasets, alerts and e-mail/Slack/Teams notifications."
    )
    parameters = PARAMETERS

    def expand(self, values: Mapping[str, Any]) -> PipelineSpec:
        """The pipeline spec for typed parameter ``values``."""
        _check_values(values)
        analyses = values["analysis_types"]
        steps = _quote_steps(values)
        alert_steps: list[str] = []
        if {"risk", "compliance"} & set(analyses):
            steps += _position_steps(values)
            steps.append(
                {
                    "name": "position_bands",
                    "type": "mask",
                    "input": "mask_accounts",
                    "description": "Position values as bands ($1M-$10M) in the positions output.",
                    "fields": [_value_band()],
                }
            )
        if "risk" in analyses:
            steps += _risk_steps(values)
            alert_steps.append("var_alerts")
        if "compliance" in analyses:
            steps += _compliance_steps(values)
            alert_steps += ["restricted_alerts", "limit_alerts", "concentration_alerts"]
        if alert_steps:
            steps.append(
                {
                    "name": "alerts",
                    "type": "map",
                    "input": alert_steps,
                    "description": "Every breach alert, one row each.",
                    "rename": {
                        "alert_symbol": "symbol",
                        "alert_account": "account_id",
                        "alert_date": "as_of",
                    },
                }
            )
        out = values["output_dir"].rstrip("/")
        return pipeline_spec(
            self,
            values,
            owner="investment-data",
            sources=_sources(values),
            steps=steps,
            sinks=_sinks(values, alert_steps),
            dead_letter={"path": f"{out}/dead_letters", "format": "jsonl", "redact": True},
            governance={
                "frameworks": ["MiFID II", "SOX"],
                "classification": "internal",
                "fields": {"account_id": "PII", "market_value_usd": "confidential"},
            },
        )


TEMPLATE = InvestmentDataTemplate()
