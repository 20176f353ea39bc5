"""Access patterns over a time range: who reads what, how often, who is new, what is unusual.

A *read* is a run that lists the dataset among its inputs, dated by the run's start. The
*history* is the ``baseline_days`` whole days before the range: a reader is *new* when it did
not read the dataset in that history; anomalies compare the range with it.

Anomaly rule: the modified z-score of Iglewicz and Hoaglin,
``z = 0.6745 * (x - median) / MAD`` with MAD the median absolute deviation of the history,
flagged when ``|z| > 3.5``. Not mean ± 3σ, because the history is short (days, a few dozen
runs) and holds the very spikes we look for: one past spike inflates σ enough to hide the next
one, and the mean follows it, while median and MAD ignore up to half the history being odd.
When more than half the history is identical (a job that runs exactly once a day) MAD is 0:
the mean absolute deviation is used instead (``z = (x - median) / (1.2533 * MeanAD)``), and
when the history is perfectly constant any change counts, with an infinite score.

Two series are checked per (job, dataset):

* rows read per run (``dataQualityMetrics.rowCount`` or ``inputStatistics.rowCount``), against
  the same job's earlier runs on that dataset;
* reads per UTC day, against the daily counts of the history (days without a read count as
  0, from the first day the job read the dataset, so a job that began last week is not
  compared with the weeks before it existed).

Both concern batch runs. A STREAMING run reads continuously: it counts as a read in every
range it was running in, and its row counts grow with its age (they measure duration, not
volume), so neither series applies to it.

Fewer than ``MIN_HISTORY`` points is no basis for a statistic: such series are listed as
unchecked rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lineage.reports.events import DatasetId, DatasetUse, EventLog, JobId, Run, iso

THRESHOLD = 3.5
MIN_HISTORY = 5
_MAD_TO_Z = 0.6745  # MAD of a normal distribution is 0.6745 σ
_MEANAD_TO_SIGMA = 1.2533  # mean absolute deviation of a normal distribution is σ / 1.2533
DEFAULT_BASELINE_DAYS = 30


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


def rows_read(use: DatasetUse) -> int | None:
    """Rows a run read from a dataset, from whichever standard facet carries it."""
    for name in ("dataQualityMetrics", "inputStatistics"):
        facet = use.facet(name)
        if facet is not None and isinstance(facet.get("rowCount"), int):
            return int(facet["rowCount"])
    return None


@dataclass
class ReadStats:
    """One job's reads of one dataset in the range."""

    job: JobId
    dataset: DatasetId
    reads: int
    rows: int | None
    first_read: dt.datetime
    last_read: dt.datetime
    history_reads: int
    history_days: int
    new: bool
    streaming: bool = False
    """Read by a streaming run: counted while running, row counts not comparable."""

    @property
    def history_per_day(self) -> float | None:
        return self.history_reads / self.history_days if self.history_days else None


@dataclass
class Anomaly:
    """A value outside its history: one run's rows, or one day's reads."""

    kind: str
    """``rows`` (rows read by one run) or ``reads`` (reads in one day)."""
    job: JobId
    dataset: DatasetId
    when: dt.datetime
    run_id: str | None
    score: Score
    history: int

    @property
    def direction(self) -> str:
        return "above" if self.score.z > 0 else "below"

    def explain(self) -> str:
        what, unit = ("rows read", "earlier runs") if self.kind == "rows" else ("reads", "days")
        z = "inf" if math.isinf(self.score.z) else f"{self.score.z:+.1f}"
        return (
            f"{self.score.value:g} {what}, {self.direction} the median {self.score.median:g} "
            f"of {self.history} {unit} (deviation {self.score.spread:g}, z={z})"
        )


@dataclass
class AccessReport:
    """Reads in a range, with what is new and what is unusual in it."""

    start: dt.datetime
    end: dt.datetime
    baseline_start: dt.datetime
    stats: list[ReadStats]
    anomalies: list[Anomaly]
    unchecked: list[str] = field(default_factory=list)

    def new_readers(self) -> list[ReadStats]:
        return [s for s in self.stats if s.new]

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only, times as ISO text, for ``--json`` and scripts."""
        return {
            "range": {"from": iso(self.start), "to": iso(self.end)},
            "baseline": {"from": iso(self.baseline_start), "to": iso(self.start)},
            "rule": {
                "score": "modified z-score 0.6745*(x-median)/MAD (MeanAD*1.2533 when MAD is 0)",
                "threshold": THRESHOLD,
                "min_history": MIN_HISTORY,
            },
            "reads": [
                {
                    "job": str(s.job),
                    "dataset": s.dataset.uri,
                    "namespace": s.dataset.namespace,
                    "name": s.dataset.name,
                    "reads": s.reads,
                    "rows": s.rows,
                    "first_read": iso(s.first_read),
                    "last_read": iso(s.last_read),
                    "history_reads_per_day": s.history_per_day,
                    "new_reader": s.new,
                    "streaming": s.streaming,
                }
                for s in self.stats
            ],
            "new_readers": [
                {"job": str(s.job), "dataset": s.dataset.uri, "first_read": iso(s.first_read)}
                for s in self.new_readers()
            ],
            "anomalies": [
                {
                    "kind": a.kind,
                    "job": str(a.job),
                    "dataset": a.dataset.uri,
                    "when": iso(a.when),
                    "run_id": a.run_id,
                    "value": a.score.value,
                    "median": a.score.median,
                    "deviation": a.score.spread,
                    "z": None if math.isinf(a.score.z) else round(a.score.z, 3),
                    "direction": a.direction,
                    "history_points": a.history,
                    "explanation": a.explain(),
                }
                for a in self.anomalies
            ],
            "unchecked": self.unchecked,
        }


def _active(run: Run, start: dt.datetime, end: dt.datetime) -> bool:
    """A batch run reads in the range when it starts in it; a streaming run whenever it was
    running during it (it reads continuously, and may have started long before)."""
    if run.processing_type == "STREAMING":
        return run.started < end and run.last_event >= start
    return start <= run.started < end


def _day(moment: dt.datetime) -> dt.datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _days(first: dt.datetime, stop: dt.datetime) -> list[dt.datetime]:
    """UTC midnights from ``first``'s day up to (not including) ``stop``."""
    days, day = [], _day(first)
    while day < stop:
        days.append(day)
        day += dt.timedelta(days=1)
    return days


def analyse_access(
    log: EventLog,
    start: dt.datetime,
    end: dt.datetime,
    *,
    baseline_days: int = DEFAULT_BASELINE_DAYS,
) -> AccessReport:
    """Reads in ``[start, end)`` compared with the ``baseline_days`` whole days before."""
    if end <= start:
        raise ValueError("the range is empty: --to must be after --from")
    baseline_start = _day(start) - dt.timedelta(days=baseline_days)
    reads: dict[tuple[JobId, DatasetId], list[tuple[Run, DatasetUse]]] = {}
    for run in log.runs:
        if run.started < end and run.last_event >= baseline_start:
            for use in run.inputs.values():
                reads.setdefault((run.job, use.dataset), []).append((run, use))

    stats: list[ReadStats] = []
    anomalies: list[Anomaly] = []
    unchecked: list[str] = []
    for (job, dataset), pair_reads in sorted(reads.items()):
        before = [(r, u) for r, u in pair_reads if baseline_start <= r.started < start]
        during = [(r, u) for r, u in pair_reads if _active(r, start, end)]
        if not during:
            continue
        streaming = any(r.processing_type == "STREAMING" for r, _ in during)
        counts = [n for r, u in during if (n := rows_read(u)) is not None]
        history_days = _days(before[0][0].started, _day(start)) if before else []
        stats.append(
            ReadStats(
                job,
                dataset,
                reads=len(during),
                rows=None if streaming or not counts else sum(counts),
                first_read=max(during[0][0].started, start),
                last_read=max(during[-1][0].started, start),
                history_reads=len(before),
                history_days=len(history_days),
                new=not before,
                streaming=streaming,
            )
        )
        if not before:
            continue  # a new reader has no history to compare with; it is reported as new
        label = f"{job} reading {dataset.uri}"
        batch_before = [(r, u) for r, u in before if r.processing_type != "STREAMING"]
        batch_during = [(r, u) for r, u in during if r.processing_type != "STREAMING"]
        if not batch_during:
            continue  # continuous readers: neither a per-run volume nor a frequency to judge
        anomalies += _volume_anomalies(job, dataset, batch_before, batch_during, label, unchecked)
        anomalies += _frequency_anomalies(
            job, dataset, batch_before, batch_during, history_days, start, end, label, unchecked
        )
    anomalies.sort(key=lambda a: (a.when, str(a.job), a.dataset, a.kind))
    return AccessReport(start, end, baseline_start, stats, anomalies, unchecked)


def _volume_anomalies(
    job: JobId,
    dataset: DatasetId,
    before: list[tuple[Run, DatasetUse]],
    during: list[tuple[Run, DatasetUse]],
    label: str,
    unchecked: list[str],
) -> list[Anomaly]:
    """Runs in the range whose rows read stand out from the earlier runs' counts."""
    history = [n for _, u in before if (n := rows_read(u)) is not None]
    current = [(r, n) for r, u in during if (n := rows_read(u)) is not None]
    if not current:
        return []
    if len(history) < MIN_HISTORY:
        unchecked.append(f"rows: {label}: {len(history)} earlier run(s) with row counts")
        return []
    found = []
    for run, rows in current:
        score = robust_score(rows, history)
        if score.anomalous:
            found.append(
                Anomaly("rows", job, dataset, run.started, run.run_id, score, len(history))
            )
    return found


def _frequency_anomalies(
    job: JobId,
    dataset: DatasetId,
    before: list[tuple[Run, DatasetUse]],
    during: list[tuple[Run, DatasetUse]],
    history_days: list[dt.datetime],
    start: dt.datetime,
    end: dt.datetime,
    label: str,
    unchecked: list[str],
) -> list[Anomaly]:
    """Days in the range whose number of reads stands out from the history's days."""
    if len(history_days) < MIN_HISTORY:
        unchecked.append(f"reads/day: {label}: {len(history_days)} day(s) of history")
        return []
    per_day: Mapping[dt.datetime, int] = _count_by_day(r.started for r, _ in before)
    history = [per_day.get(day, 0) for day in history_days]
    current = _count_by_day(r.started for r, _ in during)
    found = []
    for day in _days(start, end):
        score = robust_score(current.get(day, 0), history)
        if score.anomalous:
            found.append(Anomaly("reads", job, dataset, day, None, score, len(history)))
    return found


def _count_by_day(moments: Iterable[dt.datetime]) -> dict[dt.datetime, int]:
    counts: dict[dt.datetime, int] = {}
    for moment in moments:
        counts[_day(moment)] = counts.get(_day(moment), 0) + 1
    return counts
