"""Who read and wrote what, per principal, over a window; what is unusual; which controls care.

A run's *principal* is who ran it: the ``beamwright_principal`` run facet (``name``, ``type``
user/service/ci, ``source``). Events written before that facet existed carry none: their runs
are attributed to the principal ``unknown`` and reported as unattributed, since access that
cannot be tied to an identity is itself a logging gap. A run *reads* its inputs and *writes*
its outputs; rows come from ``dataQualityMetrics``/``inputStatistics`` and
``outputStatistics``; an output's audience from its ``beamwright_audience`` facet.

Baselines are rolling and per principal: a day ``D`` of the window is compared with the
``baseline_days`` days before ``D`` (from the principal's first run, if later), using every
run the log holds, including those before the window (the CLI loads them). A check needs
``MIN_HISTORY_DAYS`` days of baseline; days (or principals) with less are listed as unchecked,
never guessed at. Times are UTC.

Anomalies, each with the observed value and the baseline it is measured against:

* ``volume``: a day's rows read, rows written or runs of one principal above its baseline
  days (days without a run count as 0). Rule: the modified z-score of Iglewicz and Hoaglin,
  ``z = 0.6745 * (x - median) / MAD``, flagged when ``z > 3.5``, i.e. ``x > median + 5.19 MAD``.
  Median and MAD (median absolute deviation), not mean and standard deviation, because the
  baseline is short and holds the very spikes looked for: one earlier spike inflates σ enough
  to hide the next one, while median and MAD ignore up to half the baseline being odd. When
  more than half the baseline is identical MAD is 0 and the mean absolute deviation is used
  (``z = (x - median) / (1.2533 * MeanAD)``); a perfectly constant baseline flags any rise.
  Only rises are flagged, and only to more than ``MIN_RATIO`` (3) times the median: doing less
  is not an access risk, and a user who runs a job once or twice a day doubles their volume
  on a two-run day, which a tight MAD would otherwise flag.
* ``time_of_day``: a run starting more than ``HOUR_TOLERANCE`` hour(s) outside the principal's
  usual hours: the shortest span of the (circular) clock holding the start hours of its
  baseline runs (at least ``MIN_HISTORY_RUNS``). A span, not the set of hours seen, so a user
  working 09:00 to 17:00 is not flagged for the first run at noon.
* ``new_dataset``: the principal's first access to a dataset, made after it has a baseline
  (it has run for ``MIN_HISTORY_DAYS`` days without touching that dataset).
* ``new_principal``: a principal's first run, when the log covers ``MIN_HISTORY_DAYS`` days
  before it in which that principal never ran.

Streaming runs read continuously: they count as accesses but neither their row counts (which
grow with their age) nor their start hour say anything, so volume and time checks skip them.

Control mapping (``CONTROLS``; SOC 2 = AICPA Trust Services Criteria 2017, revised points of
focus 2022; ISO = ISO/IEC 27001:2022 Annex A). SOC 2 and ISO apply to every finding; GDPR,
PCI-DSS, SOX and HIPAA when a dataset involved declares that framework in its governance facet.

=============== ========================== ========================================= ===========================================
anomaly         SOC 2                      ISO/IEC 27001:2022                        framework-specific
=============== ========================== ========================================= ===========================================
volume          CC7.2 monitoring for       A.8.16 monitoring activities,             GDPR Art. 32(1)(b), Art. 33; PCI-DSS 10.4.1;
                anomalies                  A.8.12 data leakage prevention            HIPAA 164.308(a)(1)(ii)(D); SOX 404 ITGC
time_of_day     CC7.2                      A.8.16                                    PCI-DSS 10.4.1; HIPAA 164.308(a)(1)(ii)(D)
new_dataset     CC6.1 logical access,      A.5.15 access control, A.5.18 access      GDPR Art. 25(2); PCI-DSS 7.2.2;
                CC6.3 least privilege      rights, A.8.3 information access          HIPAA 164.308(a)(4); SOX 404 ITGC
                                           restriction
new_principal   CC6.2 registration and     A.5.16 identity management, A.5.18        PCI-DSS 8.2.4, 7.2.4; HIPAA 164.308(a)(4)
                authorisation of users
unattributed    CC7.2                      A.8.15 logging                            PCI-DSS 10.2.1.1; HIPAA 164.312(b);
                                                                                     GDPR Art. 5(2)
service or CI   (as above)                 + A.8.2 privileged access rights          (as above)
principal
=============== ========================== ========================================= ===========================================

The report as a whole is evidence for periodic user access reviews (``REVIEW_CONTROLS``):
SOC 2 CC6.2/CC6.3, ISO A.5.18 and A.8.15, PCI-DSS 7.2.4, HIPAA 164.308(a)(1)(ii)(D).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lineage.reports.compliance import governance_of
from lineage.reports.events import (
    AUDIENCE_FACET,
    PRINCIPAL_FACET,
    DatasetId,
    DatasetUse,
    EventLog,
    Run,
    iso,
)

THRESHOLD = 3.5
MIN_HISTORY_DAYS = 7
MIN_HISTORY_RUNS = 10
MIN_RATIO = 3.0
HOUR_TOLERANCE = 2
DEFAULT_WINDOW_DAYS = 30
DEFAULT_BASELINE_DAYS = 14
_MAD_TO_Z = 0.6745  # MAD of a normal distribution is 0.6745 σ
_MEANAD_TO_SIGMA = 1.2533  # mean absolute deviation of a normal distribution is σ / 1.2533


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """How far a value is from its history, robustly."""

    value: float
    median: float
    spread: float
    """MAD, or the mean absolute deviation when MAD is 0."""
    z: float

    @property
    def anomalous(self) -> bool:
        return abs(self.z) > THRESHOLD


def robust_score(value: float, history: Sequence[float]) -> Score:
    """The modified z-score of ``value`` against ``history`` (see the module docstring)."""
    median = statistics.median(history)
    deviations = [abs(h - median) for h in history]
    mad = statistics.median(deviations)
    if mad > 0:
        return Score(value, median, mad, _MAD_TO_Z * (value - median) / mad)
    mean_ad = statistics.fmean(deviations)
    if mean_ad > 0:
        return Score(value, median, mean_ad, (value - median) / (_MEANAD_TO_SIGMA * mean_ad))
    z = 0.0 if value == median else math.copysign(math.inf, value - median)
    return Score(value, median, 0.0, z)


# --- controls --------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Control:
    """One control of one framework a finding is evidence for (or against)."""

    framework: str
    id: str
    title: str

    def __str__(self) -> str:
        return f"{self.framework} {self.id}"


def _controls(*rows: tuple[str, str, str]) -> tuple[Control, ...]:
    return tuple(Control(*row) for row in rows)


# controls that more than one anomaly kind concerns, each written once
_ANOMALY_MONITORING = ("SOC2", "CC7.2", "monitors system components for anomalies")
_ACCESS_RIGHTS = ("ISO27001", "A.5.18", "access rights")
_ACCESS_MANAGEMENT = ("HIPAA", "164.308(a)(4)", "information access management")
_MONITORING = (_ANOMALY_MONITORING, ("ISO27001", "A.8.16", "monitoring activities"))
_ACTIVITY_REVIEW = (
    ("PCI-DSS", "10.4.1", "audit logs reviewed at least once daily"),
    ("HIPAA", "164.308(a)(1)(ii)(D)", "information system activity review"),
)
CONTROLS: Mapping[str, tuple[Control, ...]] = {
    "volume": _controls(
        *_MONITORING,
        ("ISO27001", "A.8.12", "data leakage prevention"),
        ("GDPR", "Art. 32(1)(b)", "ongoing confidentiality of processing"),
        ("GDPR", "Art. 33", "assess whether a personal data breach must be notified (72 h)"),
        *_ACTIVITY_REVIEW,
        ("SOX", "404 ITGC", "access to financial data monitored"),
    ),
    "time_of_day": _controls(
        *_MONITORING,
        *_ACTIVITY_REVIEW,
    ),
    "new_dataset": _controls(
        ("SOC2", "CC6.1", "logical access to protected information assets"),
        ("SOC2", "CC6.3", "access authorised by role, least privilege"),
        ("ISO27001", "A.5.15", "access control"),
        _ACCESS_RIGHTS,
        ("ISO27001", "A.8.3", "information access restriction"),
        ("GDPR", "Art. 25(2)", "only the personal data necessary accessible by default"),
        ("PCI-DSS", "7.2.2", "access assigned by job function, least privilege"),
        _ACCESS_MANAGEMENT,
        ("SOX", "404 ITGC", "access to financial data authorised"),
    ),
    "new_principal": _controls(
        ("SOC2", "CC6.2", "new users registered and authorised before access"),
        ("ISO27001", "A.5.16", "identity management"),
        _ACCESS_RIGHTS,
        ("PCI-DSS", "8.2.4", "user IDs added only with approval"),
        ("PCI-DSS", "7.2.4", "user accounts and access reviewed"),
        _ACCESS_MANAGEMENT,
    ),
    "unattributed": _controls(
        _ANOMALY_MONITORING,
        ("ISO27001", "A.8.15", "logging"),
        ("PCI-DSS", "10.2.1.1", "audit logs capture all individual user access"),
        ("HIPAA", "164.312(b)", "audit controls"),
        ("GDPR", "Art. 5(2)", "accountability"),
    ),
}
PRIVILEGED = Control("ISO27001", "A.8.2", "privileged access rights")
"""Added for service and CI principals: standing technical identities with broad access."""
REVIEW_CONTROLS = _controls(
    ("SOC2", "CC6.2", "access credentials reviewed"),
    ("SOC2", "CC6.3", "access authorised by role, least privilege"),
    ("ISO27001", "A.5.18", "access rights reviewed"),
    ("ISO27001", "A.8.15", "logging"),
    ("PCI-DSS", "7.2.4", "user accounts and access reviewed"),
    ("HIPAA", "164.308(a)(1)(ii)(D)", "information system activity review"),
)
"""What the report as a whole supports: a periodic review of who accessed what."""
ALWAYS = frozenset({"SOC2", "ISO27001"})


def controls_for(kind: str, frameworks: Iterable[str], principal_type: str) -> list[Control]:
    """The controls an anomaly of ``kind`` concerns, given the frameworks its datasets declare."""
    declared = ALWAYS | {f.upper() for f in frameworks}
    found = [c for c in CONTROLS[kind] if c.framework in declared]
    if principal_type in ("service", "ci") and kind != "unattributed":
        found.append(PRIVILEGED)
    return found


# --- principals and accesses -----------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Principal:
    """Who ran a run, from the ``beamwright_principal`` run facet."""

    name: str
    type: str = "unknown"
    source: str = ""

    @property
    def attributed(self) -> bool:
        return self.name != UNKNOWN.name

    def __str__(self) -> str:
        return self.name


UNKNOWN = Principal("unknown", "unknown", "no beamwright_principal facet")


def principal_of(run: Run) -> Principal:
    """The run's principal; ``unknown`` for runs recorded before principals were."""
    facet = run.run_facets.get(PRINCIPAL_FACET)
    if not isinstance(facet, Mapping) or not facet.get("name"):
        return UNKNOWN
    return Principal(
        str(facet["name"]), str(facet.get("type") or "unknown"), str(facet.get("source") or "")
    )


def audience_of(use: DatasetUse) -> str | None:
    """The audience an output was written for, from its ``beamwright_audience`` facet."""
    facet = use.facet(AUDIENCE_FACET)
    return str(facet["name"]) if facet is not None and facet.get("name") else None


def _rows(use: DatasetUse, names: Sequence[str]) -> int | None:
    for name in names:
        facet = use.facet(name)
        if facet is not None and isinstance(facet.get("rowCount"), int):
            return int(facet["rowCount"])
    return None


def rows_read(use: DatasetUse) -> int | None:
    """Rows a run read from a dataset, from whichever standard facet carries it."""
    return _rows(use, ("dataQualityMetrics", "inputStatistics"))


def rows_written(use: DatasetUse) -> int | None:
    return _rows(use, ("outputStatistics",))


def _frameworks(use: DatasetUse) -> tuple[str, ...]:
    gov = governance_of(use)
    return gov.frameworks if gov is not None else ()


@dataclass
class DatasetAccess:
    """One principal's reads and writes of one dataset in the window."""

    principal: Principal
    dataset: DatasetId
    reads: int = 0
    writes: int = 0
    rows_read: int | None = None
    rows_written: int | None = None
    jobs: set[str] = field(default_factory=set)
    audiences: set[str] = field(default_factory=set)
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    streaming: bool = False

    def add(self, run: Run, use: DatasetUse, role: str, moment: dt.datetime) -> None:
        self.jobs.add(str(run.job))
        self.first = min(filter(None, (self.first, moment)))
        self.last = max(filter(None, (self.last, moment)))
        streaming = run.processing_type == "STREAMING"
        self.streaming |= streaming
        if role == "input":
            self.reads += 1
            rows = None if streaming else rows_read(use)
            if rows is not None:
                self.rows_read = (self.rows_read or 0) + rows
        else:
            self.writes += 1
            if (audience := audience_of(use)) is not None:
                self.audiences.add(audience)
            rows = None if streaming else rows_written(use)
            if rows is not None:
                self.rows_written = (self.rows_written or 0) + rows


@dataclass
class Anomaly:
    """Something a principal did that its own baseline does not explain, and why."""

    kind: str
    """``volume``, ``time_of_day``, ``new_dataset``, ``new_principal`` or ``unattributed``."""
    principal: Principal
    when: dt.datetime
    observed: str
    baseline: str
    reason: str
    controls: list[Control]
    dataset: DatasetId | None = None
    run_id: str | None = None
    metric: str | None = None
    value: float | None = None
    z: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "principal": self.principal.name,
            "principal_type": self.principal.type,
            "when": iso(self.when),
            "dataset": self.dataset.uri if self.dataset else None,
            "run_id": self.run_id,
            "metric": self.metric,
            "value": self.value,
            "z": None if self.z is None or math.isinf(self.z) else round(self.z, 3),
            "observed": self.observed,
            "baseline": self.baseline,
            "reason": self.reason,
            "controls": [
                {"framework": c.framework, "id": c.id, "title": c.title} for c in self.controls
            ],
        }


@dataclass
class PrincipalSummary:
    """One principal over the window."""

    principal: Principal
    runs: int
    datasets: int
    first_run: dt.datetime
    last_run: dt.datetime
    jobs: set[str]


@dataclass
class AccessReport:
    """Accesses per principal and dataset in a window, with anomalies and their controls."""

    start: dt.datetime
    end: dt.datetime
    baseline_days: int
    principals: list[PrincipalSummary]
    accesses: list[DatasetAccess]
    anomalies: list[Anomaly]
    unchecked: list[str] = field(default_factory=list)
    review_controls: tuple[Control, ...] = REVIEW_CONTROLS

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only, times as ISO text, for ``--json`` and scripts."""
        return {
            "window": {"from": iso(self.start), "to": iso(self.end)},
            "baseline_days": self.baseline_days,
            "rule": {
                "volume": "daily value > median + 5.19*MAD of the baseline days "
                "(modified z-score 0.6745*(x-median)/MAD > 3.5; MeanAD*1.2533 when MAD is 0) "
                f"and > {MIN_RATIO:g} x median",
                "time_of_day": f"start more than {HOUR_TOLERANCE} h outside the span of the "
                "baseline start hours (UTC)",
                "min_history_days": MIN_HISTORY_DAYS,
                "min_history_runs": MIN_HISTORY_RUNS,
            },
            "principals": [
                {
                    "principal": p.principal.name,
                    "type": p.principal.type,
                    "source": p.principal.source,
                    "runs": p.runs,
                    "datasets": p.datasets,
                    "jobs": sorted(p.jobs),
                    "first_run": iso(p.first_run),
                    "last_run": iso(p.last_run),
                }
                for p in self.principals
            ],
            "accesses": [
                {
                    "principal": a.principal.name,
                    "dataset": a.dataset.uri,
                    "namespace": a.dataset.namespace,
                    "name": a.dataset.name,
                    "reads": a.reads,
                    "writes": a.writes,
                    "rows_read": a.rows_read,
                    "rows_written": a.rows_written,
                    "audiences": sorted(a.audiences),
                    "jobs": sorted(a.jobs),
                    "first": iso(a.first) if a.first else None,
                    "last": iso(a.last) if a.last else None,
                    "streaming": a.streaming,
                }
                for a in self.accesses
            ],
            "anomalies": [a.to_json() for a in self.anomalies],
            "review_controls": [
                {"framework": c.framework, "id": c.id, "title": c.title}
                for c in self.review_controls
            ],
            "unchecked": self.unchecked,
        }


# --- analysis --------------------------------------------------------------------------------


def _day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _days(first: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
    """UTC midnights from ``first``'s day up to (not including) ``stop``."""
    days, day = [], _day(first)
    while day < stop:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def _active(run: Run, start: dt.datetime, end: dt.datetime) -> bool:
    """A batch run accesses in the window when it starts in it; a streaming run whenever it
    was running during it."""
    if run.processing_type == "STREAMING":
        return run.started < end and run.last_event >= start
    return start <= run.started < end


def _uses(run: Run) -> Iterable[tuple[DatasetUse, str]]:
    for use in run.inputs.values():
        yield use, "input"
    for use in run.outputs.values():
        yield use, "output"


def usual_hours(hours: Iterable[int]) -> tuple[int, int]:
    """The shortest span of the clock holding every hour in ``hours``, as (first, last):
    the complement of the widest gap between them, so 22, 23, 0, 1 gives (22, 1)."""
    ordered = sorted(set(hours))
    gaps = [((ordered[(i + 1) % len(ordered)] - h) % 24 or 24, i) for i, h in enumerate(ordered)]
    _, widest = max(gaps)
    return ordered[(widest + 1) % len(ordered)], ordered[widest]


def _outside(hour: int, first: int, last: int) -> int:
    """Hours from ``hour`` to the span ``first``..``last`` (circular); 0 inside it."""
    if (hour - first) % 24 <= (last - first) % 24:
        return 0
    return min((first - hour) % 24, (hour - last) % 24)


@dataclass
class _Activity:
    """One principal's runs in the log, with what the checks need."""

    principal: Principal
    runs: list[Run] = field(default_factory=list)

    def batch(self) -> list[Run]:
        return [r for r in self.runs if r.processing_type != "STREAMING"]

    def frameworks(self, runs: Iterable[Run]) -> set[str]:
        return {f for run in runs for use, _ in _uses(run) for f in _frameworks(use)}


_METRICS = ("rows read", "rows written", "runs")


def _daily(runs: Iterable[Run]) -> dict[dt.datetime, list[float]]:
    """Per UTC day: [rows read, rows written, runs]."""
    per_day: dict[dt.datetime, list[float]] = {}
    for run in runs:
        values = per_day.setdefault(_day(run.started), [0.0, 0.0, 0.0])
        values[0] += sum(rows_read(u) or 0 for u in run.inputs.values())
        values[1] += sum(rows_written(u) or 0 for u in run.outputs.values())
        values[2] += 1
    return per_day


def analyse_access(
    log: EventLog,
    start: dt.datetime,
    end: dt.datetime,
    *,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
) -> AccessReport:
    """Accesses in ``[start, end)`` per principal, checked against rolling baselines drawn
    from every run in ``log`` (see the module docstring)."""
    if end <= start:
        raise ValueError("the window is empty: --to must be after --from")
    if baseline_days < MIN_HISTORY_DAYS:
        raise ValueError(f"the baseline must cover at least {MIN_HISTORY_DAYS} days")
    activity: dict[Principal, _Activity] = {}
    for run in log.runs:
        if run.started < end:
            activity.setdefault(principal_of(run), _Activity(principal_of(run))).runs.append(run)
    log_start = min((r.started for r in log.runs), default=start)

    accesses: dict[tuple[Principal, DatasetId], DatasetAccess] = {}
    summaries: list[PrincipalSummary] = []
    anomalies: list[Anomaly] = []
    unchecked: list[str] = []
    if log_start + dt.timedelta(days=MIN_HISTORY_DAYS) > start:
        unchecked.append(
            f"new principal: the log begins {iso(log_start)}; principals first seen before "
            f"{iso(_day(log_start) + dt.timedelta(days=MIN_HISTORY_DAYS))} cannot be told new"
        )
    for principal, act in sorted(activity.items()):
        during = [r for r in act.runs if _active(r, start, end)]
        if not during:
            continue
        for run in during:
            for use, role in _uses(run):
                key = (principal, use.dataset)
                accesses.setdefault(key, DatasetAccess(principal, use.dataset)).add(
                    run, use, role, max(run.started, start)
                )
        summaries.append(
            PrincipalSummary(
                principal,
                len(during),
                len({u.dataset for r in during for u, _ in _uses(r)}),
                during[0].started,
                during[-1].started,
                {str(r.job) for r in during},
            )
        )
        if not principal.attributed:
            anomalies.append(_unattributed(act, during))
        covered = (_day(act.runs[0].started) - _day(log_start)).days
        if act.runs[0].started >= start and covered >= MIN_HISTORY_DAYS:
            anomalies.append(_new_principal(act, log_start))
            continue  # a new principal has no baseline of its own
        anomalies += _new_datasets(act, start, end)
        anomalies += _volume(act, start, end, baseline_days, unchecked)
        anomalies += _time_of_day(act, start, end, baseline_days, unchecked)
    anomalies.sort(key=lambda a: (a.when, a.principal, a.kind, a.dataset or DatasetId("", "")))
    return AccessReport(
        start,
        end,
        baseline_days,
        summaries,
        sorted(accesses.values(), key=lambda a: (a.principal, a.dataset)),
        anomalies,
        unchecked,
    )


def _unattributed(act: _Activity, during: list[Run]) -> Anomaly:
    datasets = {u.dataset for r in during for u, _ in _uses(r)}
    return Anomaly(
        "unattributed",
        act.principal,
        during[0].started,
        observed=f"{len(during)} run(s) of {len({r.job for r in during})} job(s) touching "
        f"{len(datasets)} dataset(s) carry no principal",
        baseline="every run should name who ran it",
        reason="these accesses cannot be attributed to a user or service identity",
        controls=controls_for("unattributed", act.frameworks(during), act.principal.type),
    )


def _new_principal(act: _Activity, log_start: dt.datetime) -> Anomaly:
    first = act.runs[0]
    days = (_day(first.started) - _day(log_start)).days
    touched = sorted({u.dataset.uri for r in act.runs for u, _ in _uses(r)})
    return Anomaly(
        "new_principal",
        act.principal,
        first.started,
        observed=f"first run {iso(first.started)} ({first.job}); touched {', '.join(touched)}",
        baseline=f"no run by {act.principal} in the {days} day(s) the log covers before",
        reason=f"{act.principal.type} principal {act.principal} appears for the first time",
        controls=controls_for("new_principal", act.frameworks(act.runs), act.principal.type),
        run_id=first.run_id,
    )


def _new_datasets(act: _Activity, start: dt.datetime, end: dt.datetime) -> list[Anomaly]:
    """First accesses in the window, by a principal with MIN_HISTORY_DAYS days of runs before."""
    seen: set[DatasetId] = set()
    first_day = _day(act.runs[0].started)
    found = []
    for run in act.runs:
        for use, role in _uses(run):
            if use.dataset in seen:
                continue
            seen.add(use.dataset)
            established = (_day(run.started) - first_day).days >= MIN_HISTORY_DAYS
            if not (start <= run.started < end and established):
                continue
            before = [r for r in act.runs if r.started < _day(run.started)]
            usual = sorted({u.dataset.uri for r in before for u, _ in _uses(r)})
            verb = "read" if role == "input" else "write"
            found.append(
                Anomaly(
                    "new_dataset",
                    act.principal,
                    run.started,
                    observed=f"first {verb} of {use.dataset.uri} ({run.job})",
                    baseline=f"{len(before)} earlier run(s) over "
                    f"{(_day(run.started) - first_day).days} day(s) touched only "
                    + ", ".join(usual),
                    reason=f"first access to this dataset by {act.principal}",
                    controls=controls_for("new_dataset", _frameworks(use), act.principal.type),
                    dataset=use.dataset,
                    run_id=run.run_id,
                )
            )
    return found


def _baseline_days(act: _Activity, day: dt.datetime, baseline_days: int) -> list[dt.datetime]:
    first = max(_day(act.runs[0].started), day - dt.timedelta(days=baseline_days))
    return _days(first, day)


def _volume(
    act: _Activity,
    start: dt.datetime,
    end: dt.datetime,
    baseline_days: int,
    unchecked: list[str],
) -> list[Anomaly]:
    """Days in the window whose rows read, rows written or runs stand out from the baseline."""
    batch = act.batch()
    per_day = _daily(batch)
    found: list[Anomaly] = []
    short: list[str] = []
    for day in _days(start, end):
        today = [r for r in batch if _day(r.started) == day and start <= r.started < end]
        if not today:
            continue
        history_days = _baseline_days(act, day, baseline_days)
        if len(history_days) < MIN_HISTORY_DAYS:
            short.append(day.date().isoformat())
            continue
        observed = _daily(today)[day]
        for index, metric in enumerate(_METRICS):
            history = [per_day.get(d, [0.0, 0.0, 0.0])[index] for d in history_days]
            score = robust_score(observed[index], history)
            if score.z <= THRESHOLD or observed[index] <= MIN_RATIO * score.median:
                continue
            z = "inf" if math.isinf(score.z) else f"{score.z:.1f}"
            found.append(
                Anomaly(
                    "volume",
                    act.principal,
                    day,
                    observed=f"{observed[index]:,.0f} {metric} on {day.date().isoformat()}",
                    baseline=f"median {score.median:,.0f}/day, MAD {score.spread:,.0f} over "
                    f"{len(history_days)} day(s) before",
                    reason=f"{metric} {score.value / score.median:.1f}x the daily median, "
                    f"z={z} > {THRESHOLD}"
                    if score.median
                    else f"{metric} where the daily median is 0, z={z} > {THRESHOLD}",
                    controls=controls_for("volume", act.frameworks(today), act.principal.type),
                    run_id=today[0].run_id if len(today) == 1 else None,
                    metric=metric,
                    value=score.value,
                    z=score.z,
                )
            )
    if short:
        unchecked.append(
            f"volume: {act.principal}: fewer than {MIN_HISTORY_DAYS} baseline days on "
            + ", ".join(short)
        )
    return found


def _time_of_day(
    act: _Activity,
    start: dt.datetime,
    end: dt.datetime,
    baseline_days: int,
    unchecked: list[str],
) -> list[Anomaly]:
    """Runs in the window starting outside the hours the principal's baseline runs started in."""
    batch = act.batch()
    found: list[Anomaly] = []
    short = 0
    for run in batch:
        if not start <= run.started < end:
            continue
        day = _day(run.started)
        since = day - dt.timedelta(days=baseline_days)
        baseline = [r for r in batch if since <= r.started < day]
        if len(baseline) < MIN_HISTORY_RUNS:
            short += 1
            continue
        first, last = usual_hours(r.started.hour for r in baseline)
        distance = _outside(run.started.hour, first, last)
        if distance <= HOUR_TOLERANCE:
            continue
        found.append(
            Anomaly(
                "time_of_day",
                act.principal,
                run.started,
                observed=f"run started {run.started.strftime('%H:%M')} UTC ({run.job})",
                baseline=f"{len(baseline)} run(s) in the {baseline_days} day(s) before started "
                f"between {first:02d}:00 and {last:02d}:59 UTC",
                reason=f"{distance} h from the nearest usual hour (tolerance {HOUR_TOLERANCE} h)",
                controls=controls_for("time_of_day", act.frameworks([run]), act.principal.type),
                run_id=run.run_id,
                metric="start hour",
                value=float(run.started.hour),
            )
        )
    if short:
        unchecked.append(
            f"time of day: {act.principal}: {short} run(s) with fewer than "
            f"{MIN_HISTORY_RUNS} baseline runs"
        )
    return found
