"""The ``investment_data`` template end to end on its shipped sample data, with notifications
to local SMTP and webhook servers; its parameters; the provider formats; the window metrics it
added (first/last, stddev, percentiles).

Expected values are computed here from the sample files with plain Python (csv + numpy), not
read back from the pipeline, and the planted defects are counted one by one (see
``pipelines/dev/investment_datagen.py``).
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connectors.files.base import CorruptFileError
from connectors.files.registry import make_format
from pipelines.cli import load_target
from pipelines.loading import SpecError
from pipelines.run import run_spec
from pipelines.spec import PipelineSpec
from templates.investment_data import ANALYSES, CHANNELS, SOURCES, TEMPLATE, trading_day

DATA = Path(__file__).resolve().parents[1] / "templates" / "sample_data" / "investment"
AS_OF = "2026-03-27"


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def emailing_spec(tmp: Path, smtp_port: int, **values: str) -> PipelineSpec:
    """The template writing under ``tmp`` (outputs in ``out``, a pseudonym key it creates)
    with e-mail notifications to the local SMTP sink on ``smtp_port``; ``values``: the other
    parameters, as text as the CLI takes them."""
    return load_target(
        "investment_data",
        {
            "output_dir": str(tmp / "out"),
            "pseudonym_key_file": str(tmp / "pseudonym.key"),
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp_port),
            "email_to": "risk@example.com",
            **values,
        },
    )


@pytest.fixture(scope="module")
def servers():
    from tests.servers.notify import IncomingWebhook, SmtpSink

    smtp, slack, teams = SmtpSink(), IncomingWebhook(), IncomingWebhook("/workflows/abc/xyz")
    yield smtp, slack, teams
    for server in (smtp, slack, teams):
        server.close()


@pytest.fixture(scope="module")
def job(tmp_path_factory, servers):
    """One run of the template on the sample data, every channel on, VaR limit 1.5 %."""
    smtp, slack, teams = servers
    out = tmp_path_factory.mktemp("investment")
    os.environ["BW_TEST_SLACK_URL"] = slack.url
    os.environ["BW_TEST_TEAMS_URL"] = teams.url
    try:
        spec = emailing_spec(
            out,
            smtp.port,
            var_limit="0.015",
            notification_channels="email,slack,teams",
            slack_webhook_url="env:BW_TEST_SLACK_URL",
            teams_webhook_url="env:BW_TEST_TEAMS_URL",
        )
        summary = run_spec(spec)
    finally:
        del os.environ["BW_TEST_SLACK_URL"], os.environ["BW_TEST_TEAMS_URL"]
    return summary, out / "out"


# --------------------------------------------------------------------------- counts


def test_every_row_is_accounted_for_and_each_planted_defect_is_dead_lettered(job):
    summary, _ = job
    assert summary.status == "COMPLETE" and summary.reconciled
    # yahoo 4 x 60 + 1 duplicate, alpha vantage 2 x 60, bloomberg 4 x 60 + 2 + 1 unreadable,
    # instruments 10, positions 15 a day x 60 days, fx rates 5 currencies x 60 days, 1 restricted
    assert summary.rows_read == 241 + 120 + 243 + 10 + 900 + 300 + 1
    assert summary.node("bloomberg").rows_dead_lettered == 1  # return code 10
    assert summary.node("quote_instruments").rows_dead_lettered == 1  # XYZ
    assert summary.node("validate_quotes").rules == {
        "stale_quote": 1,
        "currency_matches_master": 1,
        "positive_volume": 1,
        "required:close": 1,
        "positive_close": 1,
    }
    assert summary.node("dedupe_quotes").rules == {"duplicate": 1}  # MSFT 2026-01-20 twice
    assert summary.node("validate_positions").rules == {"positive_price": 1}
    assert summary.rows_dead_lettered == 9
    assert summary.node("quotes").rows_out == 603 - 1 - 6


def test_lineage_run_events_are_written(job):
    _, out = job
    events = [
        json.loads(line) for line in (out / "lineage" / "events.jsonl").read_text().splitlines()
    ]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE"]
    outputs = {d["name"].rsplit("/", 1)[-1] for d in events[-1]["outputs"]}
    assert {"quotes", "performance", "positions", "exposure", "risk", "alerts"} <= outputs
    notify = [d for d in events[-1]["outputs"] if d["namespace"].startswith(("slack", "teams"))]
    assert notify and not any("services" in d["name"] or "workflows" in d["name"] for d in notify)


# --------------------------------------------------------------------------- performance


def test_weekly_bars_match_the_yahoo_file_by_hand(job):
    _, out = job
    rows = read_csv(DATA / "yahoo" / "AAPL.csv")
    performance = pq.read_table(out / "performance").to_pylist()
    for monday, rejected in (("2026-01-12", None), ("2026-02-09", "2026-02-10")):
        start = dt.date.fromisoformat(monday)
        week = [
            r
            for r in rows
            if start <= dt.date.fromisoformat(r["Date"]) < start + dt.timedelta(7)
            and r["Date"] != rejected  # volume 0: dead-lettered, not in the bar
        ]
        h, lo, c, v = (
            np.array([float(r[k]) for r in week]) for k in ("High", "Low", "Close", "Volume")
        )
        (bar,) = [
            p for p in performance if p["symbol"] == "AAPL" and p["window_start"].date() == start
        ]
        assert bar["bars"] == len(week) == (5 if rejected is None else 4)
        assert bar["open"] == float(week[0]["Open"]) and bar["close"] == float(week[-1]["Close"])
        assert bar["high"] == h.max() and bar["low"] == lo.min() and bar["volume"] == v.sum()
        assert bar["vwap"] == pytest.approx(((h + lo + c) / 3 * v).sum() / v.sum(), rel=1e-12)
        assert bar["window_return"] == pytest.approx(bar["close"] / bar["open"] - 1)
    assert {p["symbol"] for p in performance} == {
        "AAPL", "MSFT", "JPM", "XOM", "JNJ", "SAP", "SIE", "HSBA", "NESN", "6758"
    }  # fmt: skip


# --------------------------------------------------------------------------- risk


def portfolio_values() -> dict[str, dict[str, tuple[float, int]]]:
    """portfolio -> day -> (value in USD, positions), from the files, the zero price left out."""
    fx = {(r["date"], r["currency"]): float(r["usd_rate"]) for r in read_csv(DATA / "fx_rates.csv")}
    values: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0]))
    for r in read_csv(DATA / "positions.csv"):
        if float(r["price"]) <= 0:
            continue
        rate = fx[(r["as_of_date"], r["currency"])]
        value = values[r["portfolio"]][r["as_of_date"]]
        value[0] += round(float(r["quantity"]) * float(r["price"]) * rate, 2)
        value[1] += 1
    return {p: {d: tuple(v) for d, v in days.items()} for p, days in values.items()}


def test_var_and_volatility_match_a_hand_computation(job):
    _, out = job
    risk = pq.read_table(out / "risk").to_pylist()
    values = portfolio_values()
    for portfolio in ("GLOBAL", "GROWTH"):
        days = sorted(values[portfolio])
        pnl = [
            values[portfolio][b][0] - values[portfolio][a][0]
            for a, b in zip(days, days[1:], strict=False)
        ]
        ret = [
            values[portfolio][b][0] / values[portfolio][a][0] - 1
            for a, b in zip(days, days[1:], strict=False)
        ]
        (latest,) = [r for r in risk if r["portfolio"] == portfolio and str(r["to_day"]) == AS_OF]
        assert latest["days"] == 20 and str(latest["from_day"]) == days[-20]
        assert latest["var_99"] == pytest.approx(-np.percentile(pnl[-20:], 1), rel=1e-7)
        assert latest["var_95"] == pytest.approx(-np.percentile(pnl[-20:], 5), rel=1e-7)
        assert latest["daily_volatility"] == pytest.approx(np.std(ret[-20:], ddof=1), rel=1e-7)
        assert latest["value"] == pytest.approx(values[portfolio][AS_OF][0])


def test_no_var_window_spans_a_day_with_a_missing_position(job):
    """INCOME's JNJ position was dead-lettered on 2026-02-17: the P&L into and out of that
    day would be a loss and a gain that never happened, so windows holding them are dropped."""
    _, out = job
    income = [r for r in pq.read_table(out / "risk").to_pylist() if r["portfolio"] == "INCOME"]
    gap = dt.date(2026, 2, 17)
    assert income and not any(r["from_day"] <= gap <= r["to_day"] for r in income)
    assert all(r["days"] == 20 for r in income)


def test_exposure_sums_to_the_portfolio_value(job):
    _, out = job
    exposure = pq.read_table(out / "exposure").to_pylist()
    values = portfolio_values()
    for portfolio, days in values.items():
        total = sum(
            e["market_value_usd"]
            for e in exposure
            if e["portfolio"] == portfolio and e["window_start"].date().isoformat() == AS_OF
        )
        assert total == pytest.approx(days[AS_OF][0])


def test_trading_day_clock_skips_weekends():
    assert trading_day("2026-03-30") - trading_day("2026-03-27") == 1  # Friday -> Monday
    assert trading_day("2026-03-27") - trading_day("2026-01-05") == 59  # 60 weekdays


# --------------------------------------------------------------------------- compliance, masking


def test_alerts_are_the_breaches_with_pseudonymous_accounts(job):
    _, out = job
    alerts = pq.read_table(out / "alerts").to_pylist()
    found = sorted((a["alert_type"], a["portfolio"], a["symbol"]) for a in alerts)
    assert found == [
        ("concentration", "GLOBAL", None),
        ("concentration", "GROWTH", None),
        ("concentration", "INCOME", None),
        ("position_limit", "GROWTH", "AAPL"),  # 42,000 AAPL: the only one over 5M USD
        ("restricted_list", "INCOME", "XOM"),
        ("var_limit", "GLOBAL", None),  # 1.64 % against 1.5 %; GROWTH and INCOME ~1.4 %
    ]
    assert all(str(a["as_of"]) == AS_OF for a in alerts)
    text = json.dumps([a["message"] for a in alerts] + [a["account_id"] for a in alerts])
    assert "ACC-" not in text
    (limit,) = [a for a in alerts if a["alert_type"] == "position_limit"]
    assert limit["message"].endswith("limit: $1M-$10M")  # a band, not the value


def test_positions_output_is_masked(job):
    _, out = job
    positions = pq.read_table(out / "positions")
    assert positions.num_rows == 899
    accounts = set(positions.column("account_id").to_pylist())
    assert len(accounts) == 5 and not any(a.startswith("ACC-") for a in accounts)
    assert set(positions.column("market_value_usd").to_pylist()) <= {
        "<$1M", "$1M-$10M", "$10M-$100M", "$100M+"
    }  # fmt: skip


def test_concentration_matches_the_largest_position_by_hand(job):
    _, out = job
    (growth,) = [
        a
        for a in pq.read_table(out / "alerts").to_pylist()
        if a["alert_type"] == "concentration" and a["portfolio"] == "GROWTH"
    ]
    fx = {(r["date"], r["currency"]): float(r["usd_rate"]) for r in read_csv(DATA / "fx_rates.csv")}
    mv = [
        round(float(r["quantity"]) * float(r["price"]) * fx[(AS_OF, r["currency"])], 2)
        for r in read_csv(DATA / "positions.csv")
        if r["as_of_date"] == AS_OF and r["portfolio"] == "GROWTH"
    ]
    assert f"is {round(max(mv) / sum(mv) * 100, 1)}% of its value" in growth["message"]


# --------------------------------------------------------------------------- notifications


def test_each_channel_got_one_digest_of_every_alert(job, servers):
    smtp, slack, teams = servers
    summary, out = job
    messages = sorted(a["message"] for a in pq.read_table(out / "alerts").to_pylist())
    title = f"investment_data alerts for {AS_OF}: 6 alerts"
    assert [summary.node(f"notify_{c}").rows_out for c in CHANNELS] == [6, 6, 6]
    (mail,) = smtp.messages
    assert mail["to"] == ["risk@example.com"] and f"Subject: {title}" in mail["content"]
    body = email.message_from_string(mail["content"], policy=email.policy.default).get_content()
    assert sorted(body.splitlines()) == messages
    (post,) = slack.received
    assert post["path"] == "/services/T000/B000/XXXX"
    header, section = post["json"]["blocks"]
    assert post["json"]["text"] == title and header["text"]["text"] == title
    assert sorted(line[2:] for line in section["text"]["text"].splitlines()) == messages
    (card_post,) = teams.received
    (attachment,) = card_post["json"]["attachments"]
    assert card_post["json"]["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["body"][0]["text"] == title
    assert sorted(b["text"] for b in card["body"][1:]) == messages


def test_an_unreachable_channel_fails_after_its_retries():
    from connectors.alert_notify import Channel, NotifyError, digest, send
    from pipelines.dev.kafka_broker import free_port

    table = pa.table({"message": ["a breach"]})
    channel = Channel("slack", url=f"http://127.0.0.1:{free_port()}/hook", attempts=2, timeout=1)
    with pytest.raises(NotifyError, match="after 2 attempts"):
        send(channel, digest(table, title="t", text_field="message", max_lines=5))


def test_a_digest_lists_up_to_max_lines_and_counts_the_rest():
    from connectors.alert_notify import digest, slack_payload

    d = digest(
        pa.table({"message": [f"m{i}" for i in range(7)]}),
        title="T",
        text_field="message",
        max_lines=3,
    )
    assert d.title == "T: 7 alerts" and d.lines == ["m0", "m1", "m2"] and d.omitted == 4
    assert slack_payload(d)["blocks"][1]["text"]["text"].endswith(
        "and 4 more (see the alerts output)"
    )


# --------------------------------------------------------------------------- parameters


def expand(**given):
    from pipelines.loading import resolve_parameters

    return TEMPLATE.expand(resolve_parameters(TEMPLATE.parameters, given))


@pytest.mark.parametrize("source", SOURCES)
def test_each_data_source_is_a_file_source_in_its_format(source):
    spec = expand(data_sources=[source])
    formats = {s.name: s.format for s in spec.sources if s.type == "file"}
    expected = {
        "yahoo": "yahoo_csv",
        "alpha_vantage": "alpha_vantage_json",
        "bloomberg": "bloomberg_dl",
    }
    assert formats[source] == expected[source]
    assert not (set(SOURCES) - {source}) & set(formats)
    assert spec.step("quote_keys").inputs == [source]


@pytest.mark.parametrize(
    ("analysis", "sinks"),
    [
        ("performance", {"quotes", "performance_out", "rejections"}),
        (
            "risk",
            {"quotes", "positions_out", "exposure_out", "risk_out", "alerts_out", "rejections"},
        ),
        ("compliance", {"quotes", "positions_out", "alerts_out", "rejections"}),
    ],
)
def test_each_analysis_type_adds_its_steps_and_outputs(analysis, sinks):
    spec = expand(analysis_types=[analysis])
    assert {s.name for s in spec.sinks} == sinks
    steps = {s.name for s in spec.steps}
    assert ("performance_window" in steps) == (analysis == "performance")
    assert ("risk_window" in steps) == (analysis == "risk")
    assert ("restricted_check" in steps) == (analysis == "compliance")


@pytest.mark.parametrize("channel", CHANNELS)
def test_each_notification_channel_is_a_notify_sink(channel, monkeypatch):
    monkeypatch.setenv("HOOK", "https://hooks.example.com/x")
    spec = expand(notification_channels=[channel], email_to=["a@example.com"],
                  slack_webhook_url="env:HOOK", teams_webhook_url="env:HOOK")  # fmt: skip
    (sink,) = [s for s in spec.sinks if s.type == "notify"]
    assert sink.channel == channel and sink.input == "alerts"


@pytest.mark.parametrize(
    ("name", "value", "supported"),
    [
        ("data_sources", "reuters", SOURCES),
        ("analysis_types", "esg", ANALYSES),
        ("notification_channels", "pagerduty", CHANNELS),
        ("mode", "micro_batch", ["batch", "streaming"]),
    ],
)
def test_unsupported_values_are_refused_listing_what_is_supported(name, value, supported):
    with pytest.raises(SpecError) as caught:
        load_target("investment_data", {name: value})
    message = str(caught.value)
    assert f"parameters.{name}: '{value}' is not supported" in message
    assert f"supported: {', '.join(supported)}" in message


def test_a_channel_without_its_settings_is_refused():
    with pytest.raises(SpecError, match="slack_webhook_url: slack notifications need"):
        load_target("investment_data", {"notification_channels": "slack"})
    with pytest.raises(SpecError, match="alerts come from risk and compliance"):
        load_target("investment_data", {"analysis_types": "performance", "notification_channels": "email", "email_to": "a@b.c"})  # fmt: skip


def test_the_streaming_variant_reads_kafka_and_translates_to_a_streaming_job(tmp_path):
    from pipelines.plan import translate

    spec = expand(mode="streaming", output_dir=str(tmp_path / "out"),
                  pseudonym_key_file=str(tmp_path / "k"))  # fmt: skip
    assert {s.name: s.type for s in spec.sources}["quotes_stream"] == "kafka"
    assert {s.name: s.type for s in spec.sources}["positions"] == "kafka"
    (topic,) = [s for s in spec.sinks if s.type == "kafka"]
    assert topic.topic == "investment.alerts" and topic.input == "alerts"
    plan = translate(spec, "dataflow", streaming=True)
    assert plan["streaming"] is True
    assert any(st["name"].startswith("alerts_topic/") for st in plan["steps"])


# --------------------------------------------------------------------------- formats


def test_alpha_vantage_api_errors_fail_the_file_quoting_the_api(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"Note": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day."}))  # fmt: skip
    with pytest.raises(CorruptFileError, match="Alpha Vantage answered 'Note': Thank you"):
        list(make_format("alpha_vantage_json").read(str(path), 100))


def test_alpha_vantage_intraday_times_are_converted_to_utc(tmp_path):
    path = tmp_path / "ibm.json"
    point = {"1. open": "1", "2. high": "2", "3. low": "0.5", "4. close": "1.5", "5. volume": "10"}
    path.write_text(json.dumps({
        "Meta Data": {"2. Symbol": "IBM", "4. Interval": "5min", "6. Time Zone": "US/Eastern"},
        "Time Series (5min)": {"2026-01-05 16:00:00": point, "2026-07-06 09:35:00": point,
                               "2026-07-06 09:30:00": "oops"},
    }))  # fmt: skip
    (chunk,) = make_format("alpha_vantage_json").read(str(path), 100)
    assert chunk.rows.column("ts").to_pylist() == ["2026-01-05T21:00:00Z", "2026-07-06T13:35:00Z"]
    assert [(r.offset, r.rule) for r in chunk.rejects] == [(3, "parse")]


def test_a_truncated_bloomberg_drop_is_refused_and_bad_lines_are_rejects(tmp_path):
    lines = (DATA / "bloomberg" / "gethistory_20260327.out").read_text().splitlines()
    cut = tmp_path / "cut.out"
    cut.write_text("\n".join(lines[:40]) + "\n")
    with pytest.raises(CorruptFileError, match="no END-OF-DATA"):
        list(make_format("bloomberg_dl").read(str(cut), 100))
    start = lines.index("START-OF-DATA")
    bad = tmp_path / "bad.out"
    bad.write_text(
        "\n".join([*lines[: start + 1], "SIE GY Equity|0|6|20260105|1|2|", *lines[-3:]]) + "\n"
    )
    (chunk,) = make_format("bloomberg_dl").read(str(bad), 100)
    assert chunk.rows.num_rows == 0
    assert [(r.offset, r.rule) for r in chunk.rejects] == [(start + 2, "column_count")]


def test_yahoo_symbol_comes_from_the_file_name():
    (chunk,) = make_format("yahoo_csv").read(str(DATA / "yahoo" / "XOM.csv"), 1000)
    assert set(chunk.rows.column("symbol").to_pylist()) == {"XOM"}
    assert chunk.rows.column("ts")[0].as_py() == "2026-01-05T00:00:00Z"


# --------------------------------------------------------------------------- window metrics


def test_first_last_stddev_and_percentiles_do_not_depend_on_how_rows_were_split():
    from transforms.window_aggregate import BatchPartials, MergePartials

    metrics = {"o": "first(v)", "c": "last(v)", "sd": "stddev(v)", "p5": "p5(v)", "p50": "p50(v)"}
    rng = np.random.default_rng(7)
    values = rng.normal(size=40)
    times = rng.permutation(40).astype(np.int64) * 1_000_000
    merge = MergePartials(["k"], metrics)
    acc = merge.create_accumulator()
    for part in np.array_split(np.arange(40), 3):  # three batches, times out of order
        table = pa.table({"k": ["a"] * len(part), "v": values[part]})
        for p in BatchPartials(["k"], metrics).partials(table, times[part], None):
            acc = merge.add_input(acc, (None, None, p.partial))
    row = merge.extract_output(acc).to_pylist()[0]
    order = np.argsort(times)
    assert row["o"] == values[order[0]] and row["c"] == values[order[-1]]
    assert row["sd"] == pytest.approx(np.std(values, ddof=1))
    assert row["p5"] == pytest.approx(np.percentile(values, 5))
    assert row["p50"] == pytest.approx(np.median(values))


def test_reports_refuse_window_only_metrics():
    from transforms.aggregate import GroupAggregate

    with pytest.raises(ValueError, match="computed by window steps only"):
        GroupAggregate(["k"], {"o": "first(v)"})


# --------------------------------------------------------------------------- Alpha Vantage API


@pytest.fixture
def av_api():
    from tests.servers.alpha_vantage import AlphaVantageApi

    api = AlphaVantageApi(DATA / "alpha_vantage", "test-key-123")
    yield api
    api.close()


def test_alpha_vantage_from_its_api_gives_the_rows_the_files_give(tmp_path, av_api, monkeypatch):
    monkeypatch.setenv("AV_KEY", "test-key-123")
    spec = load_target(
        "investment_data",
        {
            "data_sources": "alpha_vantage",
            "analysis_types": "performance",
            "alpha_vantage_api_key": "env:AV_KEY",
            "alpha_vantage_url": av_api.url,
            "output_dir": str(tmp_path / "api"),
        },
    )
    assert {s.name: s.type for s in spec.sources}["alpha_vantage"] == "alpha_vantage"
    summary = run_spec(spec)
    assert summary.status == "COMPLETE" and summary.reconciled
    assert summary.node("alpha_vantage").rows_out == 120
    assert summary.node("validate_quotes").rules == {"positive_close": 1}  # JNJ on 2026-02-03
    assert sorted(r["symbol"] for r in av_api.requests) == ["JNJ", "SAP"]
    from_api = pq.read_table(tmp_path / "api" / "performance").sort_by(
        [("symbol", "ascending"), ("window_start", "ascending")]
    )
    files = load_target(
        "investment_data",
        {"data_sources": "alpha_vantage", "analysis_types": "performance", "output_dir": str(tmp_path / "files")},
    )  # fmt: skip
    run_spec(files)
    from_files = pq.read_table(tmp_path / "files" / "performance").sort_by(
        [("symbol", "ascending"), ("window_start", "ascending")]
    )
    assert from_api.to_pylist() == from_files.to_pylist()
    assert "test-key-123" not in json.dumps(summary.to_dict(), default=str)


def test_alpha_vantage_rate_limit_notes_are_retried_and_a_bad_key_fails(av_api):
    from connectors.alphavantage_http import AlphaVantageError, SeriesRequest, fetch

    request = SeriesRequest(av_api.url, "TIME_SERIES_DAILY", "SAP")
    av_api.rate_limited = 2
    body = fetch(request, "test-key-123", attempts=3, retry_wait=0, timeout=5)
    assert json.loads(body)["Meta Data"]["2. Symbol"] == "SAP" and len(av_api.requests) == 3
    av_api.rate_limited = 5
    with pytest.raises(AlphaVantageError, match="rate limited: Thank you") as caught:
        fetch(request, "test-key-123", attempts=2, retry_wait=0, timeout=5)
    assert "test-key-123" not in str(caught.value)
    av_api.rate_limited = 0
    from connectors.files.alphavantage import decode

    body = fetch(request, "wrong-key", attempts=3, retry_wait=0, timeout=5)  # not retried
    assert len(av_api.requests) == 3 + 2 + 1
    with pytest.raises(CorruptFileError, match="answered 'Error Message': the parameter apikey"):
        decode(body, request.url(), 100)


def test_a_run_that_fails_its_checks_notifies_nobody(tmp_path):
    """The digest is sent by the driver after publishing: a run over its error threshold (9
    rejected rows of 1,815 > 0.1 %) publishes nothing and sends nothing."""
    from pipelines.run import RunFailed
    from tests.servers.notify import SmtpSink

    smtp = SmtpSink()
    try:
        spec = emailing_spec(
            tmp_path, smtp.port, error_threshold="0.001", notification_channels="email"
        )
        with pytest.raises(RunFailed, match="above the error threshold"):
            run_spec(spec)
        assert smtp.messages == []
    finally:
        smtp.close()


def test_dedupe_keeps_the_earliest_row_per_key_across_sources_and_batches():
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that, equal_to

    from connectors.records import with_positions
    from transforms.dedupe import Dedupe

    def batch(source: str, first: int, keys: list[tuple[str, str]]) -> pa.Table:
        table = pa.table({"symbol": [k[0] for k in keys], "ts": [k[1] for k in keys]})
        return with_positions(table, source, list(range(first, first + len(keys))))

    batches = [
        batch("b.csv", 2, [("AAPL", "d1"), ("MSFT", "d1")]),
        batch("a.json", 1, [("AAPL", "d1"), ("AAPL", "d2")]),  # a.json sorts first: it wins
        batch("b.csv", 4, [("MSFT", "d1"), ("MSFT", "d2")]),  # another batch of b.csv
    ]
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | beam.Create(batches) | Dedupe(["symbol", "ts"], step_name="dd")
        kept = out.rows | beam.FlatMap(
            lambda t: [
                (r["symbol"], r["ts"], r["_bw_source"], r["_bw_offset"]) for r in t.to_pylist()
            ]
        )
        dead = out.dead_letters | beam.FlatMap(
            lambda t: list(zip(t.column("source").to_pylist(), t.column("offset").to_pylist(),
                               t.column("errorMessage").to_pylist(), strict=True))
        )  # fmt: skip
        assert_that(
            kept,
            equal_to([("AAPL", "d1", "a.json", 1), ("AAPL", "d2", "a.json", 2),
                      ("MSFT", "d1", "b.csv", 3), ("MSFT", "d2", "b.csv", 5)]),
            label="kept",
        )  # fmt: skip
        assert_that(
            dead,
            equal_to([("b.csv", 2, "(symbol, ts) already in a.json at 1"),
                      ("b.csv", 4, "(symbol, ts) already in b.csv at 3")]),
            label="dead",
        )  # fmt: skip
