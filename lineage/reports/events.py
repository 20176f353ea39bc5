"""Reading OpenLineage event logs into runs.

Reports need *runs*, not events: a run's START names its datasets, its COMPLETE carries the
statistics and quality results, a streaming run sends RUNNING heartbeats with metrics so far.
So events are grouped by ``run.runId`` and merged in event-time order: for each facet, the
latest event that carries it wins, which is what OpenLineage consumers such as Marquez do too.

Two sources give the same events:

* event log files: JSONL as written by openlineage-python's ``file`` transport in append mode
  (one event per line), a single JSON document (one event, a list of events, or a Marquez
  ``{"events": [...]}`` export), or a directory of such files (the transport's non-append mode
  writes one file per event);
* a Marquez-compatible HTTP API: ``GET /api/v1/events/lineage``, the only read endpoint that
  returns the events as received, custom facets included (the namespace/job/dataset endpoints
  return Marquez's own aggregated model and drop facets such as ``beamwright_governance``).
  Pages are read in ascending event time with ``limit``/``offset``; ascending keeps the paging
  stable while new events arrive, as they are appended at the end.

Only the standard library is used, so the CLI starts fast.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.errors import BeamwrightError
from lineage.naming import strip_credentials

TERMINAL_STATES = ("COMPLETE", "FAIL", "ABORT")
FAILED_STATES = ("FAIL", "ABORT")
MARQUEZ_PAGE_SIZE = 200

Facets = dict[str, Any]


class EventLogError(BeamwrightError):
    """The event source cannot be read (missing file, HTTP error, not OpenLineage events)."""


_FRACTION = re.compile(r"(\.\d+)")


def parse_time(text: str) -> dt.datetime:
    """An aware UTC datetime from ISO 8601 text; a bare date means its midnight UTC.

    Python 3.10's ``fromisoformat`` accepts neither ``Z`` nor 9-digit fractions (Java and Go
    emitters write both), so those are normalised first. Naive times are taken as UTC.
    """
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    value = _FRACTION.sub(lambda m: (m.group(1) + "000000")[:7], value, count=1)
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an ISO 8601 date or time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc)


def iso(moment: dt.datetime) -> str:
    """Second-precision UTC ISO text, as shown in reports."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


GOVERNANCE_FACET = "beamwright_governance"
"""Dataset facet: classification, frameworks, per-field classes and protections (the name
lineage.facets emits; repeated here because that module imports pyarrow)."""
PRINCIPAL_FACET = "beamwright_principal"
"""Run facet: who ran the run (``name``, ``type`` user/service/ci, ``source``)."""
AUDIENCE_FACET = "beamwright_audience"
"""Output dataset facet: who the output was written for (``name``, ``attributes``,
``masked_fields``)."""


@dataclass(frozen=True, order=True)
class DatasetId:
    """A dataset by OpenLineage naming: ``file`` + absolute path, ``kafka://host:port`` + topic."""

    namespace: str
    name: str

    @property
    def node_id(self) -> str:
        """Marquez's node id format (``dataset:<namespace>:<name>``)."""
        return f"dataset:{self.namespace}:{self.name}"

    @property
    def uri(self) -> str:
        """A readable single string: the path for files, ``namespace/name`` otherwise."""
        if self.namespace == "file":
            return self.name
        separator = "" if self.name.startswith("/") else "/"
        return f"{self.namespace}{separator}{self.name}"

    @property
    def short_name(self) -> str:
        """The last path segment: what a graph node or a narrow table column shows."""
        return self.name.rstrip("/").rsplit("/", 1)[-1] or self.name


@dataclass(frozen=True, order=True)
class JobId:
    """A job by namespace and name."""

    namespace: str
    name: str

    @property
    def node_id(self) -> str:
        """Marquez's node id format (``job:<namespace>:<name>``)."""
        return f"job:{self.namespace}:{self.name}"

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class DatasetUse:
    """One dataset as one run read or wrote it, facets merged over the run's events."""

    dataset: DatasetId
    facets: Facets = field(default_factory=dict)
    io_facets: Facets = field(default_factory=dict)
    """``inputFacets`` for an input, ``outputFacets`` for an output."""

    def facet(self, name: str) -> Mapping[str, Any] | None:
        """A facet by key, looked up in the input/output facets first, then dataset facets.

        Producers disagree on where some facets go (``dataQualityAssertions`` is an input
        facet in the spec but older emitters put it with the dataset facets), so readers look
        in both places.
        """
        value = self.io_facets.get(name)
        if not isinstance(value, Mapping):
            value = self.facets.get(name)
        return value if isinstance(value, Mapping) else None


@dataclass
class Run:
    """One run of a job: its events merged."""

    run_id: str
    job: JobId
    started: dt.datetime
    last_event: dt.datetime
    state: str
    """The terminal event type if the run ended, else the latest event type."""
    ended: dt.datetime | None = None
    run_facets: Facets = field(default_factory=dict)
    job_facets: Facets = field(default_factory=dict)
    inputs: dict[DatasetId, DatasetUse] = field(default_factory=dict)
    outputs: dict[DatasetId, DatasetUse] = field(default_factory=dict)
    event_count: int = 0

    @property
    def succeeded(self) -> bool:
        return self.state == "COMPLETE"

    @property
    def failed(self) -> bool:
        return self.state in FAILED_STATES

    @property
    def processing_type(self) -> str:
        """BATCH or STREAMING from the ``jobType`` job facet; BATCH when not declared."""
        facet = self.job_facets.get("jobType")
        if isinstance(facet, Mapping) and facet.get("processingType"):
            return str(facet["processingType"]).upper()
        return "BATCH"

    @property
    def error_message(self) -> str | None:
        facet = self.run_facets.get("errorMessage")
        return str(facet.get("message")) if isinstance(facet, Mapping) else None


@dataclass
class EventLog:
    """The runs found in an event source, oldest first."""

    runs: list[Run]
    source: str
    skipped: int = 0
    """Lines or documents that were not OpenLineage run events (or not JSON)."""
    warnings: list[str] = field(default_factory=list)

    def jobs(self) -> dict[JobId, list[Run]]:
        """Runs per job, oldest first."""
        by_job: dict[JobId, list[Run]] = {}
        for run in self.runs:
            by_job.setdefault(run.job, []).append(run)
        return by_job

    def datasets(self) -> dict[DatasetId, list[tuple[Run, DatasetUse, str]]]:
        """Every use of every dataset: (run, use, ``"input"`` or ``"output"``), oldest first."""
        uses: dict[DatasetId, list[tuple[Run, DatasetUse, str]]] = {}
        for run in self.runs:
            for use in run.inputs.values():
                uses.setdefault(use.dataset, []).append((run, use, "input"))
            for use in run.outputs.values():
                uses.setdefault(use.dataset, []).append((run, use, "output"))
        return uses

    def latest_dataset_facet(self, dataset: DatasetId, name: str) -> Mapping[str, Any] | None:
        """The most recent value of a dataset facet, from any run that read or wrote it."""
        for run in reversed(self.runs):
            for use in (run.outputs.get(dataset), run.inputs.get(dataset)):
                if use is not None and (value := use.facet(name)) is not None:
                    return value
        return None

    def filtered(
        self,
        namespace: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> EventLog:
        """Runs of jobs in ``namespace`` that started in ``[since, until)``."""
        runs = [
            r
            for r in self.runs
            if (namespace is None or r.job.namespace == namespace)
            and (since is None or r.started >= since)
            and (until is None or r.started < until)
        ]
        return replace(self, runs=runs)


def _merge_facets(target: Facets, new: object) -> None:
    if isinstance(new, Mapping):
        for key, value in new.items():
            if value is not None:
                target[key] = value


def _merge_datasets(target: dict[DatasetId, DatasetUse], datasets: object, io_key: str) -> None:
    if not isinstance(datasets, list):
        return
    for item in datasets:
        if not isinstance(item, Mapping) or "namespace" not in item or "name" not in item:
            continue
        key = DatasetId(str(item["namespace"]), str(item["name"]))
        use = target.setdefault(key, DatasetUse(key))
        _merge_facets(use.facets, item.get("facets"))
        _merge_facets(use.io_facets, item.get(io_key))


def _is_run_event(event: object) -> bool:
    if not isinstance(event, Mapping):
        return False
    run, job = event.get("run"), event.get("job")
    return (
        isinstance(run, Mapping)
        and bool(run.get("runId"))
        and isinstance(job, Mapping)
        and "name" in job
        and "namespace" in job
        and isinstance(event.get("eventTime"), str)
    )


def build_log(events: Iterable[object], source: str) -> EventLog:
    """Group run events by run id and merge them; anything else is counted as skipped.

    The same event delivered twice (a retried HTTP post, two overlapping log files) is
    counted once: identity is (run id, event type, event time).
    """
    seen: set[tuple[str, str, str]] = set()
    valid: list[tuple[dt.datetime, int, Mapping[str, Any]]] = []
    skipped = 0
    for position, event in enumerate(events):
        if not _is_run_event(event):
            skipped += 1
            continue
        assert isinstance(event, Mapping)
        try:
            moment = parse_time(event["eventTime"])
        except ValueError:
            skipped += 1
            continue
        identity = (str(event["run"]["runId"]), str(event.get("eventType")), event["eventTime"])
        if identity in seen:
            continue
        seen.add(identity)
        valid.append((moment, position, event))
    valid.sort(key=lambda item: (item[0], item[1]))

    runs: dict[str, Run] = {}
    for moment, _, event in valid:
        run_id = str(event["run"]["runId"])
        state = str(event.get("eventType") or "OTHER").upper()
        run = runs.get(run_id)
        if run is None:
            job = JobId(str(event["job"]["namespace"]), str(event["job"]["name"]))
            run = runs[run_id] = Run(run_id, job, started=moment, last_event=moment, state=state)
        run.last_event = moment
        run.event_count += 1
        # a terminal state sticks: a late RUNNING or OTHER event does not reopen a run
        if state in TERMINAL_STATES:
            run.state, run.ended = state, moment
        elif run.ended is None and state != "OTHER":
            run.state = state
        _merge_facets(run.run_facets, event["run"].get("facets"))
        _merge_facets(run.job_facets, event["job"].get("facets"))
        _merge_datasets(run.inputs, event.get("inputs"), "inputFacets")
        _merge_datasets(run.outputs, event.get("outputs"), "outputFacets")
    ordered = sorted(runs.values(), key=lambda r: (r.started, r.run_id))
    return EventLog(ordered, source=source, skipped=skipped)


def _documents(text: str) -> Iterator[object]:
    """Events in one file's text: one JSON document (an event, a list, a Marquez export) or
    JSON lines. A line that is not JSON (the last line of a log cut by a crash) is yielded as
    ``None`` so it is counted as skipped without losing the rest of the file."""
    stripped = text.strip()
    if not stripped:
        return
    try:
        document = json.loads(stripped)
    except json.JSONDecodeError:  # several lines of JSON: "extra data" after the first one
        for line in stripped.splitlines():
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    yield None
        return
    if isinstance(document, Mapping) and isinstance(document.get("events"), list):
        yield from document["events"]
    elif isinstance(document, list):
        yield from document
    else:
        yield document


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl"))
    if path.is_file():
        return [path]
    raise EventLogError(f"no event log at {path}")


def read_files(paths: Iterable[str | os.PathLike[str]]) -> EventLog:
    """Runs from event log files or directories of them."""
    events: list[object] = []
    names: list[str] = []
    for raw in paths:
        path = Path(raw)
        names.append(str(path))
        for file in _files(path):
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise EventLogError(f"cannot read {file}: {exc}") from None
            events.extend(_documents(text))
    return build_log(events, source=", ".join(names))


def _api_root(url: str) -> str:
    """``.../api/v1`` for a server or API URL, without any ``user:password@`` in it: the root
    appears in messages and report headers."""
    root = strip_credentials(url).rstrip("/")
    return root if root.endswith("/api/v1") else root + "/api/v1"


def _marquez_time(moment: dt.datetime) -> str:
    # Marquez parses these as ZonedDateTime: an explicit offset is required
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


def fetch_marquez_events(
    url: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    page_size: int = MARQUEZ_PAGE_SIZE,
    api_key: str | None = None,
    timeout: float = 30.0,
    warnings: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Every event from ``GET /api/v1/events/lineage`` with event time in ``[since, until]``.

    ``before`` is always sent: Marquez otherwise defaults it to 2030-01-01 and would silently
    drop later events. Paging stops at a short page; a server that ignores ``offset`` (older
    Marquez versions) returns the same page again, which is detected and reported in ``warnings``
    rather than looping forever.
    """
    root = _api_root(url)
    base = url.rstrip("/") if url.rstrip("/").endswith("/api/v1") else url.rstrip("/") + "/api/v1"
    now = dt.datetime.now(dt.timezone.utc)
    query: dict[str, str] = {
        "sortDirection": "asc",
        "limit": str(page_size),
        "before": _marquez_time(until or now + dt.timedelta(days=1)),
    }
    if since is not None:
        query["after"] = _marquez_time(since)
    headers = {"Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    seen: set[tuple[str, str, str]] = set()
    offset = 0
    while True:
        page_url = f"{base}/events/lineage?" + urllib.parse.urlencode({**query, "offset": offset})
        request = urllib.request.Request(page_url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:
            raise EventLogError(f"{root}/events/lineage answered HTTP {exc.code}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EventLogError(f"cannot reach {root}: {reason}") from None
        except json.JSONDecodeError:
            raise EventLogError(f"{root}/events/lineage did not answer JSON") from None
        page = body.get("events") if isinstance(body, Mapping) else None
        if not isinstance(page, list):
            raise EventLogError(f"{root}/events/lineage: no 'events' list in the answer")
        new = 0
        for event in page:
            if isinstance(event, dict):
                run = event.get("run")
                key = (
                    str(run.get("runId") if isinstance(run, Mapping) else None),
                    str(event.get("eventType")),
                    str(event.get("eventTime")),
                )
                if key in seen:
                    continue
                seen.add(key)
            new += 1
            yield event
        if len(page) < page_size:
            return
        if new == 0:
            if warnings is not None:
                warnings.append(
                    f"{root} repeated a page: it ignores 'offset', so only the first "
                    f"{len(seen)} events were read"
                )
            return
        offset += len(page)


def read_marquez(
    url: str,
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    page_size: int = MARQUEZ_PAGE_SIZE,
    api_key: str | None = None,
) -> EventLog:
    """Runs from a Marquez-compatible lineage API."""
    warnings: list[str] = []
    events = list(
        fetch_marquez_events(
            url, since=since, until=until, page_size=page_size, api_key=api_key, warnings=warnings
        )
    )
    log = build_log(events, source=_api_root(url))
    log.warnings.extend(warnings)
    return log
