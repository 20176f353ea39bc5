"""``beamwright lineage access`` over a generated month: per principal, exact anomalies, controls.

The month comes from pipelines/dev/lineage_history.py (seeded): five principals with daily
rhythms and one injected night of dana@acme.example exporting customers and cards. The
analysis must find exactly that night's anomalies and nothing on the four normal principals.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import pytest

from lineage.reports.access import analyse_access, usual_hours
from lineage.reports.events import DatasetId, build_log, read_files
from lineage.reports.render import access_text
from pipelines.dev import lineage_history as history
from pipelines.lineage_cli import add_parser
from tests import openlineage_schema

END = dt.datetime(2026, 11, 30, tzinfo=dt.timezone.utc)
START = END - dt.timedelta(days=30)
NIGHT = history.anomaly_day(END)  # 2026-11-24
DANA = history.ANOMALOUS_PRINCIPAL
FIXTURE = Path(__file__).parent / "data" / "lineage" / "events.jsonl"


@pytest.fixture(scope="module")
def month() -> list[dict]:
    return history.generate(END)


@pytest.fixture(scope="module")
def report(month):
    return analyse_access(build_log(month, "month"), START, END)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="beamwright")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.mark.skipif(not openlineage_schema.available(), reason="../shared/openlineage-spec absent")
def test_generated_month_validates_against_the_openlineage_and_facet_schemas(month):
    problems = [p for event in month for p in openlineage_schema.event_problems(event)]
    assert problems == []
    assert len({e["run"]["runId"] for e in month}) * 2 == len(month)
    assert history.generate(END) == month  # seeded: the same month every time


def test_the_injected_night_is_found_exactly_and_nothing_else(report):
    night = NIGHT.date().isoformat()
    found = {
        (
            a.kind,
            a.principal.name,
            a.when.isoformat()[:16],
            a.metric,
            a.dataset.uri if a.dataset else None,
        )
        for a in report.anomalies
    }
    assert found == {
        ("volume", DANA, f"{night}T00:00", "rows read", None),
        ("volume", DANA, f"{night}T00:00", "rows written", None),
        ("new_dataset", DANA, f"{night}T02:04", None, "/srv/vault/cards"),
        ("new_dataset", DANA, f"{night}T02:04", None, "/srv/sandbox/dana/export"),
        (
            "new_dataset",
            DANA,
            f"{night}T02:04",
            None,
            "postgres://crm.internal:5432/crm.public.customers",
        ),
        ("time_of_day", DANA, f"{night}T02:04", "start hour", None),
        ("time_of_day", DANA, f"{night}T02:21", "start hour", None),
        ("time_of_day", DANA, f"{night}T02:48", "start hour", None),
    }
    by_kind = {(a.kind, a.metric): a for a in report.anomalies}
    rows = by_kind[("volume", "rows read")]
    assert rows.value > 50 * float(rows.baseline.split("median ")[1].split("/")[0].replace(",", ""))
    assert "z=" in rows.reason and "median" in rows.baseline
    late = next(a for a in report.anomalies if a.kind == "time_of_day")
    assert "02:04 UTC" in late.observed and "between 13:00 and 16:59 UTC" in late.baseline


def test_anomalies_map_to_soc2_iso27001_and_the_datasets_frameworks(report):
    def controls(kind: str, dataset: str | None = None) -> set[str]:
        (anomaly,) = [
            a
            for a in report.anomalies
            if a.kind == kind
            and (dataset is None or (a.dataset and a.dataset.uri == dataset))
            and a.metric in (None, "rows read")
        ][:1]
        return {str(c) for c in anomaly.controls}

    cards = controls("new_dataset", "/srv/vault/cards")
    assert {"SOC2 CC6.1", "SOC2 CC6.3", "ISO27001 A.5.15", "ISO27001 A.5.18"} <= cards
    assert "PCI-DSS 7.2.2" in cards and not any(c.startswith("GDPR") for c in cards)
    customers = controls("new_dataset", "postgres://crm.internal:5432/crm.public.customers")
    assert "GDPR Art. 25(2)" in customers and "PCI-DSS 7.2.2" not in customers
    volume = controls("volume")
    assert {"SOC2 CC7.2", "ISO27001 A.8.16", "ISO27001 A.8.12", "GDPR Art. 33"} <= volume
    assert "ISO27001 A.8.2" not in volume  # a user, not a service identity
    assert {str(c) for c in report.review_controls} >= {"SOC2 CC6.2", "ISO27001 A.5.18"}


def test_accesses_are_per_principal_and_dataset_with_reads_writes_and_audiences(report):
    access = {(a.principal.name, a.dataset.uri): a for a in report.accesses}
    assert {p.principal.name for p in report.principals} == {
        "svc-etl",
        "ci-github",
        "alice@acme.example",
        "bob@acme.example",
        DANA,
    }
    revenue = access[("alice@acme.example", "gs://acme-finance/reports/revenue_daily")]
    assert revenue.reads == 0 and revenue.writes > 15 and revenue.audiences == {"finance"}
    export = access[(DANA, "/srv/sandbox/dana/export")]
    assert export.writes == 3 and export.rows_written > 90_000
    etl = access[("svc-etl", "/srv/landing/orders")]
    assert etl.reads == 30 and etl.principal.type == "service"


def test_a_new_principal_is_reported_once_with_its_controls(month):
    eve = history.Principal("eve@acme.example", "user", "--as")
    day = START + dt.timedelta(days=20, hours=11)
    extra = history.run_events(eve, "adhoc.peek", day, [(history.CUSTOMERS, 50_000)], [])
    report = analyse_access(build_log(month + extra, "month"), START, END)
    news = [a for a in report.anomalies if a.principal.name == "eve@acme.example"]
    assert [a.kind for a in news] == ["new_principal"]
    assert {"SOC2 CC6.2", "ISO27001 A.5.16", "ISO27001 A.5.18"} <= {
        str(c) for c in news[0].controls
    }
    assert "no run by eve@acme.example in the 20 day(s)" in news[0].baseline


def test_events_without_a_principal_are_unknown_and_reported_unattributed():
    log = read_files([FIXTURE])
    report = analyse_access(
        log,
        dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc),
        dt.datetime(2026, 3, 15, tzinfo=dt.timezone.utc),
    )
    assert {p.principal.name for p in report.principals} == {"unknown"}
    unattributed = [a for a in report.anomalies if a.kind == "unattributed"]
    assert len(unattributed) == 1
    # the fixture's datasets declare GDPR, SOX and HIPAA, not PCI-DSS
    assert {str(c) for c in unattributed[0].controls} == {
        "SOC2 CC7.2",
        "ISO27001 A.8.15",
        "HIPAA 164.312(b)",
        "GDPR Art. 5(2)",
    }


def test_usual_hours_are_the_shortest_span_of_the_clock():
    assert usual_hours([9, 11, 17, 12]) == (9, 17)
    assert usual_hours([23, 1, 0, 22]) == (22, 1)
    assert usual_hours([2]) == (2, 2)


def test_cli_defaults_to_the_last_30_days_and_fails_on_anomaly(tmp_path, capsys):
    events = tmp_path / "month.jsonl"
    assert cli("lineage", "generate-history", "--out", str(events), "--end", "2026-11-30") == 0
    assert "events of 30 day(s)" in capsys.readouterr().out
    argv = ["lineage", "access", "--events", str(events), "--to", "2026-11-30"]
    assert cli(*argv, "--json", "--fail-on-anomaly") == 1
    result = json.loads(capsys.readouterr().out)
    assert result["window"] == {"from": "2026-10-31T00:00:00Z", "to": "2026-11-30T00:00:00Z"}
    assert {a["principal"] for a in result["anomalies"]} == {DANA}
    assert all(a["controls"] and a["reason"] and a["baseline"] for a in result["anomalies"])
    assert cli(*argv, "--from", "2026-11-01", "--to", "2026-11-20") == 0  # before the night
    assert "Anomalies (0)" in capsys.readouterr().out
    assert cli(*argv, "--baseline-days", "3") == 2
    assert "at least 7" in capsys.readouterr().err


def test_text_report_says_why_and_which_controls(report):
    text = access_text(report)
    assert "observed: 3 run" not in text
    assert f"time_of_day  {DANA}" in text and "controls: SOC2 CC7.2, ISO27001 A.8.16" in text
    assert DatasetId("file", "/srv/vault/cards").uri in text
