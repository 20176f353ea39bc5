"""Compliance analysis of an event log: what is classified how, where personal data flows,
what protects it, how quality assertions fared, and findings against declared frameworks.

The inputs are facets the pipelines already emit, nothing is configured here:

* ``beamwright_governance`` (dataset facet): the dataset's classification, the frameworks it
  falls under (GDPR, SOX, HIPAA, ...), and per field a classification (PII, PHI) and the
  protection (masking strategy) applied on the way to that dataset, null when none;
* ``columnLineage`` (output facet): which input fields feed each output field, with the
  transformation type and a ``masking`` flag;
* ``dataQualityAssertions`` (input facet) and the runs' terminal states.

A field is *personal* when classified PII, PHI (health), SPI (special categories) or PCI (card
data). Each framework protects some of these classes (``PROTECTION_RULES``). Personal data *flows* to an output field
when a DIRECT column-lineage edge links them: DIRECT transformations carry values, INDIRECT
ones (filters, join keys, sorts) only influence which rows are written, so they are not flows
of the data itself. A flow is *protected* when one of its transformations is masking or the
output's governance facet names a protection for the field; either source is enough, because
the two are written by different steps (the mask step knows the strategy, the column lineage
knows the path). Hashing and keyed tokens count as pseudonymisation, which GDPR still treats
as personal data (Recital 26); redaction, partial masks, generalisation count as masking.

Findings are evaluated per run and aggregated, so a problem fixed in later runs is still
reported (at lower severity): data written while it was unprotected still exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lineage.facets import GOVERNANCE_FACET
from lineage.reports.events import DatasetId, DatasetUse, EventLog, JobId, Run, iso

PERSONAL_CLASSES = frozenset({"PII", "PHI", "SPI", "PCI"})


@dataclass(frozen=True)
class ProtectionRule:
    """A framework's rule on data leaving a job: which field classes it protects."""

    framework: str
    classes: frozenset[str]
    rule: str
    title: str


PROTECTION_RULES = (
    # GDPR Art. 5(1)(f), 25, 32: personal data (health and card data included) protected
    ProtectionRule(
        "GDPR", PERSONAL_CLASSES, "GDPR-PII-UNPROTECTED", "Personal data reaches an output unmasked"
    ),
    # HIPAA 164.312 / 164.514: PHI de-identified or protected
    ProtectionRule(
        "HIPAA", frozenset({"PHI"}), "HIPAA-PHI-UNPROTECTED", "PHI reaches an output unprotected"
    ),
    # PCI DSS 3.4 (4.0: 3.5.1): card numbers unreadable wherever stored
    ProtectionRule(
        "PCI-DSS",
        frozenset({"PCI"}),
        "PCI-DSS-PAN-UNPROTECTED",
        "Card data reaches an output unprotected",
    ),
)
PSEUDONYMISING = frozenset(
    {"hash", "pseudonymize", "pseudonymise", "tokenize", "tokenise", "encrypt"}
)
SEVERITIES = ("high", "medium", "low", "info")
UNCLASSIFIED = "unclassified"


def severity_rank(severity: str) -> int:
    """0 for the most severe; unknown severities sort last."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else len(SEVERITIES)


@dataclass(frozen=True)
class FieldGovernance:
    """A field's classification and the protection applied on the way to its dataset."""

    classification: str
    protection: str | None = None

    @property
    def personal(self) -> bool:
        return self.classification.upper() in PERSONAL_CLASSES


@dataclass(frozen=True)
class Governance:
    """The ``beamwright_governance`` facet of one dataset use."""

    classification: str
    frameworks: tuple[str, ...] = ()
    fields: Mapping[str, FieldGovernance] = field(default_factory=dict)

    def personal_fields(self) -> dict[str, FieldGovernance]:
        return {name: f for name, f in self.fields.items() if f.personal}


def parse_governance(facet: Mapping[str, object] | None) -> Governance | None:
    """A Governance from the facet's JSON; None when absent. Unknown keys are ignored."""
    if facet is None:
        return None
    raw_fields = facet.get("fields")
    fields: dict[str, FieldGovernance] = {}
    if isinstance(raw_fields, Mapping):
        for name, value in raw_fields.items():
            if isinstance(value, Mapping) and value.get("classification"):
                protection = value.get("protection")
                fields[str(name)] = FieldGovernance(
                    str(value["classification"]).upper(), str(protection) if protection else None
                )
    frameworks = facet.get("frameworks")
    return Governance(
        classification=str(facet.get("classification") or UNCLASSIFIED),
        frameworks=tuple(sorted({str(f).upper() for f in frameworks}))
        if isinstance(frameworks, list)
        else (),
        fields=fields,
    )


def governance_of(use: DatasetUse | None) -> Governance | None:
    return parse_governance(use.facet(GOVERNANCE_FACET)) if use is not None else None


def run_frameworks(run: Run) -> tuple[str, ...]:
    """Frameworks a run falls under: those declared by any dataset it read or wrote."""
    names: set[str] = set()
    for use in (*run.inputs.values(), *run.outputs.values()):
        if (gov := governance_of(use)) is not None:
            names.update(gov.frameworks)
    return tuple(sorted(names))


# --- column lineage --------------------------------------------------------------------------


@dataclass(frozen=True)
class Transformation:
    """One step of a column-lineage path, as the columnLineage facet describes it."""

    type: str
    subtype: str | None = None
    description: str | None = None
    masking: bool = False

    def __str__(self) -> str:
        text = f"{self.type}/{self.subtype}" if self.subtype else self.type
        return text + (" (masking)" if self.masking else "")


@dataclass(frozen=True)
class ColumnEdge:
    """One input field feeding one output field (or the whole output, ``target_field`` None)."""

    source: DatasetId
    source_field: str
    target: DatasetId
    target_field: str | None
    transformations: tuple[Transformation, ...] = ()

    @property
    def direct(self) -> bool:
        """Values are carried. Without transformations listed (older producers) a field
        mapping is a copy, so it counts as direct."""
        return not self.transformations or any(t.type == "DIRECT" for t in self.transformations)

    @property
    def masked(self) -> bool:
        return any(t.masking for t in self.transformations)

    def describe(self) -> str:
        return ", ".join(str(t) for t in self.transformations) or "DIRECT"


def _transformations(entry: Mapping[str, object], legacy: Mapping[str, object]) -> tuple:
    found: list[Transformation] = []
    raw = entry.get("transformations")
    if isinstance(raw, list):
        for t in raw:
            if isinstance(t, Mapping) and t.get("type"):
                found.append(
                    Transformation(
                        type=str(t["type"]).upper(),
                        subtype=str(t["subtype"]).upper() if t.get("subtype") else None,
                        description=str(t["description"]) if t.get("description") else None,
                        masking=t.get("masking") is True,
                    )
                )
    if not found and legacy.get("transformationType"):
        # facet 1-0-x: IDENTITY or MASKED on the output field, no per-input detail
        kind = str(legacy["transformationType"]).upper()
        found.append(Transformation("DIRECT", kind, None, masking=kind == "MASKED"))
    return tuple(found)


def column_edges(output: DatasetUse) -> list[ColumnEdge]:
    """The ``columnLineage`` facet of an output as edges (field-level, then dataset-level)."""
    facet = output.facet("columnLineage")
    if facet is None:
        return []
    edges: list[ColumnEdge] = []
    fields = facet.get("fields")
    if isinstance(fields, Mapping):
        for target_field, spec in fields.items():
            if not isinstance(spec, Mapping) or not isinstance(spec.get("inputFields"), list):
                continue
            for entry in spec["inputFields"]:
                if isinstance(entry, Mapping) and {"namespace", "name", "field"} <= entry.keys():
                    edges.append(
                        ColumnEdge(
                            DatasetId(str(entry["namespace"]), str(entry["name"])),
                            str(entry["field"]),
                            output.dataset,
                            str(target_field),
                            _transformations(entry, spec),
                        )
                    )
    dataset_level = facet.get("dataset")
    if isinstance(dataset_level, list):
        for entry in dataset_level:
            if isinstance(entry, Mapping) and {"namespace", "name", "field"} <= entry.keys():
                edges.append(
                    ColumnEdge(
                        DatasetId(str(entry["namespace"]), str(entry["name"])),
                        str(entry["field"]),
                        output.dataset,
                        None,
                        _transformations(entry, {}),
                    )
                )
    return edges


# --- personal data flows ---------------------------------------------------------------------


def protection_kind(strategy: str | None) -> str:
    """Pseudonymised data is still personal data under GDPR; masked data may not be, so
    reports keep the two apart."""
    return "pseudonymisation" if (strategy or "").lower() in PSEUDONYMISING else "masking"


@dataclass
class FlowObservation:
    """One personal field reaching one output field in one run."""

    run: Run
    classification: str
    transformations: str
    masked: bool
    protection: str | None
    frameworks: tuple[str, ...]

    @property
    def protected(self) -> bool:
        return self.masked or self.protection is not None


@dataclass
class PiiFlow:
    """Personal data going from an input field to an output field in one job, over runs.

    ``source`` is None when only the output's governance facet says the field holds personal
    data (no column lineage for it): the origin is unknown, the exposure is not.
    """

    job: JobId
    source: DatasetId | None
    source_field: str | None
    target: DatasetId
    target_field: str
    observations: list[FlowObservation] = field(default_factory=list)

    @property
    def latest(self) -> FlowObservation:
        return self.observations[-1]

    @property
    def classification(self) -> str:
        return self.latest.classification

    @property
    def unprotected(self) -> list[FlowObservation]:
        return [o for o in self.observations if not o.protected]

    @property
    def frameworks(self) -> tuple[str, ...]:
        return tuple(sorted({f for o in self.observations for f in o.frameworks}))

    @property
    def protection_label(self) -> str:
        """What protects the flow in its latest run, as a report shows it."""
        obs = self.latest
        if obs.protection:
            return f"{obs.protection} ({protection_kind(obs.protection)})"
        if obs.masked:
            return "masking transformation"
        return "none"

    def source_label(self) -> str:
        if self.source is None:
            return "(not in column lineage)"
        return f"{self.source.uri}#{self.source_field}"

    def target_label(self) -> str:
        return f"{self.target.uri}#{self.target_field}"


def dataset_governance(log: EventLog) -> dict[DatasetId, Governance]:
    """The latest governance facet of every dataset, for lineage that names a dataset the
    run itself does not list."""
    found: dict[DatasetId, Governance] = {}
    for dataset in log.datasets():
        gov = parse_governance(log.latest_dataset_facet(dataset, GOVERNANCE_FACET))
        if gov is not None:
            found[dataset] = gov
    return found


FlowKey = tuple[JobId, DatasetId | None, str | None, DatasetId, str]
"""job, source dataset and field (None: not in column lineage), target dataset and field"""


def personal_flows(log: EventLog) -> list[PiiFlow]:
    """Every flow of personal data to an output field, observed run by run."""
    catalogue = dataset_governance(log)
    flows: dict[FlowKey, PiiFlow] = {}

    def observe(key: FlowKey, flow: PiiFlow, obs: FlowObservation) -> None:
        flows.setdefault(key, flow).observations.append(obs)

    for run in log.runs:
        for output in run.outputs.values():
            target_gov = governance_of(output)
            target_fields = target_gov.fields if target_gov else {}
            covered: set[str] = set()
            for edge in column_edges(output):
                if edge.target_field is None or not edge.direct:
                    continue
                source_gov = governance_of(run.inputs.get(edge.source)) or catalogue.get(
                    edge.source
                )
                source_class = source_gov.fields.get(edge.source_field) if source_gov else None
                target_class = target_fields.get(edge.target_field)
                classes = [c for c in (source_class, target_class) if c and c.personal]
                if not classes:
                    continue
                covered.add(edge.target_field)
                frameworks = set(source_gov.frameworks if source_gov else ())
                frameworks.update(target_gov.frameworks if target_gov else ())
                key: FlowKey = (
                    run.job,
                    edge.source,
                    edge.source_field,
                    edge.target,
                    edge.target_field,
                )
                observe(
                    key,
                    PiiFlow(
                        run.job, edge.source, edge.source_field, edge.target, edge.target_field
                    ),
                    FlowObservation(
                        run,
                        classes[0].classification,
                        edge.describe(),
                        edge.masked,
                        target_class.protection if target_class else None,
                        tuple(sorted(frameworks)),
                    ),
                )
            for name, info in target_fields.items():
                if info.personal and name not in covered:
                    key = (run.job, None, None, output.dataset, name)
                    observe(
                        key,
                        PiiFlow(run.job, None, None, output.dataset, name),
                        FlowObservation(
                            run,
                            info.classification,
                            "unknown",
                            False,
                            info.protection,
                            target_gov.frameworks if target_gov else (),
                        ),
                    )
    # A run that failed after START declared its outputs' governance but emitted no column
    # lineage: its "source unknown" flows only repeat, less precisely, what the lineage of the
    # other runs shows, so they are kept only when they reveal something (an unprotected field).
    traced = {(k[0], k[3], k[4]) for k in flows if k[1] is not None}
    kept = [
        flow
        for key, flow in flows.items()
        if key[1] is not None or (key[0], key[3], key[4]) not in traced or flow.unprotected
    ]
    return sorted(
        kept, key=lambda f: (str(f.job), f.target, f.target_field, f.source or DatasetId("", ""))
    )


# --- datasets ---------------------------------------------------------------------------------


@dataclass
class DatasetSummary:
    """A dataset as the report lists it under its classification."""

    dataset: DatasetId
    governance: Governance | None
    readers: set[JobId] = field(default_factory=set)
    writers: set[JobId] = field(default_factory=set)
    last_seen: dt.datetime | None = None

    @property
    def classification(self) -> str:
        return self.governance.classification if self.governance else UNCLASSIFIED


def dataset_summaries(log: EventLog) -> list[DatasetSummary]:
    """Every dataset with its latest governance and the jobs that read or wrote it."""
    summaries: dict[DatasetId, DatasetSummary] = {}
    catalogue = dataset_governance(log)
    for dataset, uses in log.datasets().items():
        summary = summaries[dataset] = DatasetSummary(dataset, catalogue.get(dataset))
        for run, _, role in uses:
            (summary.readers if role == "input" else summary.writers).add(run.job)
            summary.last_seen = max(filter(None, (summary.last_seen, run.last_event)))
    return sorted(summaries.values(), key=lambda s: s.dataset)


# --- quality ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AssertionResult:
    """One assertion's outcome in one run."""

    key: str
    success: bool
    column: str | None = None
    severity: str | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass
class QualityRecord:
    """The assertion results of one run on one dataset, by assertion key."""

    run: Run
    results: dict[str, AssertionResult]


@dataclass
class QualityHistory:
    """Assertion results on one dataset, one record per run, oldest first."""

    dataset: DatasetId
    records: list[QualityRecord] = field(default_factory=list)

    def assertion_keys(self) -> list[str]:
        """Assertion keys in first-seen order."""
        seen: dict[str, None] = {}
        for record in self.records:
            seen.update(dict.fromkeys(record.results))
        return list(seen)

    def failures(self) -> int:
        return sum(not r.success for rec in self.records for r in rec.results.values())


def assertion_key(item: Mapping[str, object]) -> str:
    """``name`` when given, else ``assertion(column)``: stable across runs."""
    if item.get("name"):
        return str(item["name"])
    column = item.get("column")
    return f"{item.get('assertion')}({column})" if column else str(item.get("assertion"))


def quality_histories(log: EventLog) -> list[QualityHistory]:
    """Assertion results per dataset and run, from inputs and outputs alike."""
    histories: dict[DatasetId, QualityHistory] = {}
    for run in log.runs:
        for use in (*run.inputs.values(), *run.outputs.values()):
            facet = use.facet("dataQualityAssertions")
            items = facet.get("assertions") if facet else None
            if not isinstance(items, list):
                continue
            results: dict[str, AssertionResult] = {}
            for item in items:
                if isinstance(item, Mapping) and "assertion" in item:
                    key = assertion_key(item)
                    results[key] = AssertionResult(
                        key,
                        item.get("success") is True,
                        str(item["column"]) if item.get("column") else None,
                        str(item["severity"]).lower() if item.get("severity") else None,
                        str(item["expected"]) if item.get("expected") is not None else None,
                        str(item["actual"]) if item.get("actual") is not None else None,
                    )
            if results:
                history = histories.setdefault(use.dataset, QualityHistory(use.dataset))
                history.records.append(QualityRecord(run, results))
    return sorted(histories.values(), key=lambda h: h.dataset)


# --- findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Where a finding was seen: enough to find the run and the data it concerns."""

    job: JobId | None = None
    run_id: str | None = None
    time: dt.datetime | None = None
    dataset: DatasetId | None = None
    field: str | None = None
    note: str = ""


@dataclass
class Finding:
    """A rule broken under a framework, with what shows it (job, run, dataset, field)."""

    rule: str
    framework: str
    severity: str
    title: str
    detail: str
    evidence: list[Evidence]


def _evidence(
    run: Run, dataset: DatasetId | None, field_name: str | None, note: str = ""
) -> Evidence:
    return Evidence(run.job, run.run_id, run.started, dataset, field_name, note)


def _flow_findings(flows: Iterable[PiiFlow]) -> list[Finding]:
    """Protected data reaching an output unprotected, under each framework that covers the
    field's class (see PROTECTION_RULES) and is declared by the datasets involved."""
    findings: list[Finding] = []
    for flow in flows:
        unprotected = flow.unprotected
        if not unprotected:
            continue
        last_bad = unprotected[-1]
        still = not flow.latest.protected
        runs = f"{len(unprotected)} of {len(flow.observations)} run(s)"
        status = (
            "still unprotected in the latest run"
            if still
            else f"protected since run {flow.latest.run.run_id}; data written before still holds it"
        )
        where = f"{flow.source_label()} -> {flow.target_label()}"
        for check in PROTECTION_RULES:
            if check.framework not in flow.frameworks or flow.classification not in check.classes:
                continue
            evidence = [
                _evidence(last_bad.run, flow.target, flow.target_field, last_bad.transformations)
            ]
            if flow.source is not None:
                evidence.append(
                    _evidence(last_bad.run, flow.source, flow.source_field, "source field")
                )
            findings.append(
                Finding(
                    check.rule,
                    check.framework,
                    "high" if still else "medium",
                    check.title,
                    f"{flow.classification} field {where} in job {flow.job}: no masking "
                    f"transformation and no protection declared, in {runs}; {status}.",
                    evidence,
                )
            )
    return findings


def _lineage_gap_findings(log: EventLog) -> list[Finding]:
    """Protected data read, an output written without column lineage: whether the data
    reaches the output cannot be shown either way. One finding per job, output, framework."""
    latest: dict[tuple[JobId, DatasetId, str], tuple[Run, dict[str, list[str]], int]] = {}
    for run in log.runs:
        if run.failed:  # a failed run may stop before emitting lineage; it is reported as failed
            continue
        read: dict[str, dict[str, list[str]]] = {}  # framework -> dataset -> fields
        for use in run.inputs.values():
            gov = governance_of(use)
            for check in PROTECTION_RULES:
                if gov is None or check.framework not in gov.frameworks:
                    continue
                fields = sorted(
                    n for n, f in gov.fields.items() if f.classification in check.classes
                )
                if fields:
                    read.setdefault(check.framework, {})[use.dataset.uri] = fields
        for output in run.outputs.values():
            if output.facet("columnLineage") is not None:
                continue
            for framework, by_dataset in read.items():
                key = (run.job, output.dataset, framework)
                count = latest[key][2] + 1 if key in latest else 1
                latest[key] = (run, by_dataset, count)
    findings = []
    for (job, dataset, framework), (run, by_dataset, count) in sorted(latest.items()):
        listed = "; ".join(
            f"{uri} ({', '.join(names)})" for uri, names in sorted(by_dataset.items())
        )
        findings.append(
            Finding(
                f"{framework}-LINEAGE-MISSING",
                framework,
                "medium",
                "Output of a job reading protected data has no column lineage",
                f"Job {job} reads {listed} and wrote {dataset.uri} in {count} run(s) without a "
                "columnLineage facet: whether that data reaches it, and masked or not, cannot be "
                "shown.",
                [_evidence(run, dataset, None, "no columnLineage facet")],
            )
        )
    return findings


def _failed_run_findings(log: EventLog) -> list[Finding]:
    """SOX: failed runs of jobs touching SOX datasets, and whether a later run succeeded."""
    findings = []
    for job, runs in sorted(log.jobs().items()):
        for index, run in enumerate(runs):
            if not run.failed or "SOX" not in run_frameworks(run):
                continue
            recovery = next((r for r in runs[index + 1 :] if r.succeeded), None)
            message = run.error_message or "no error message"
            evidence = [_evidence(run, None, None, f"{run.state}: {message}")]
            if recovery is None:
                severity, status = "high", "no later run of the job completed"
            else:
                severity, status = "info", f"recovered by run {recovery.run_id}"
                evidence.append(_evidence(recovery, None, None, "first later successful run"))
            findings.append(
                Finding(
                    "SOX-FAILED-RUN",
                    "SOX",
                    severity,
                    "Run of a SOX-relevant job failed"
                    + (" without recovery" if recovery is None else " (recovered)"),
                    f"Run {run.run_id} of {job} ended {run.state} at "
                    f"{iso(run.ended or run.last_event)}: {message}; {status}.",
                    evidence,
                )
            )
    return findings


def _assertion_findings(histories: Iterable[QualityHistory]) -> list[Finding]:
    """SOX: failing quality assertions on data of SOX-relevant runs, and their follow-up."""
    findings = []
    for history in histories:
        for key in history.assertion_keys():
            series = [
                (rec.run, rec.results[key])
                for rec in history.records
                if key in rec.results and "SOX" in run_frameworks(rec.run)
            ]
            failures = [i for i, (_, result) in enumerate(series) if not result.success]
            if not failures:
                continue
            last_failure = failures[-1]
            run, result = series[last_failure]
            recovery = next((r for r, res in series[last_failure + 1 :] if res.success), None)
            evidence = [_evidence(run, history.dataset, result.column, _assertion_note(result))]
            if recovery is not None:
                severity = "info"
                status = f"passed again in run {recovery.run_id}"
                evidence.append(_evidence(recovery, history.dataset, None, "passed"))
            else:
                severity = "medium" if result.severity == "warn" else "high"
                status = "no later run passed it"
            findings.append(
                Finding(
                    "SOX-ASSERTION-FAILED",
                    "SOX",
                    severity,
                    f"Quality assertion {key} failed on {history.dataset.short_name}",
                    f"{key} on {history.dataset.uri} failed in {len(failures)} of "
                    f"{len(series)} run(s) (severity {result.severity or 'unspecified'}), last in "
                    f"run {run.run_id} of {run.job}; {status}.",
                    evidence,
                )
            )
    return findings


def _assertion_note(result: AssertionResult) -> str:
    note = "failed"
    if result.expected is not None or result.actual is not None:
        note += f": expected {result.expected}, actual {result.actual}"
    return note


def _unclassified_findings(log: EventLog) -> list[Finding]:
    """Datasets used by runs under a framework but carrying no governance facet at all."""
    seen: dict[DatasetId, tuple[Run, tuple[str, ...]]] = {}
    for run in log.runs:
        frameworks = run_frameworks(run)
        if not frameworks:
            continue
        for use in (*run.inputs.values(), *run.outputs.values()):
            if governance_of(use) is None:
                seen[use.dataset] = (run, frameworks)
    return [
        Finding(
            "GOV-UNCLASSIFIED",
            "/".join(frameworks),
            "low",
            "Dataset without classification in a regulated job",
            f"{dataset.uri} is used by {run.job} alongside {'/'.join(frameworks)} datasets but "
            "declares no classification: its fields cannot be checked.",
            [_evidence(run, dataset, None, "no beamwright_governance facet")],
        )
        for dataset, (run, frameworks) in sorted(seen.items())
    ]


# --- the report ------------------------------------------------------------------------------


@dataclass
class ComplianceReport:
    """Everything the compliance report shows, independent of its format."""

    source: str
    generated: dt.datetime
    runs: int
    jobs: list[JobId]
    first_run: dt.datetime | None
    last_run: dt.datetime | None
    datasets: list[DatasetSummary]
    flows: list[PiiFlow]
    quality: list[QualityHistory]
    findings: list[Finding]
    warnings: list[str]

    def by_classification(self) -> dict[str, list[DatasetSummary]]:
        """Datasets per classification, most sensitive first (as the governance facet ranks
        them; unknown labels after those, unclassified last)."""
        groups: dict[str, list[DatasetSummary]] = {}
        for summary in self.datasets:
            groups.setdefault(summary.classification, []).append(summary)
        order = ["restricted", "PHI", "PII", "confidential", "internal", "public"]
        return dict(
            sorted(
                groups.items(),
                key=lambda kv: (
                    kv[0] == UNCLASSIFIED,
                    order.index(kv[0]) if kv[0] in order else len(order),
                    kv[0],
                ),
            )
        )

    def severity_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        return counts


def analyse(log: EventLog, *, generated: dt.datetime | None = None) -> ComplianceReport:
    """The compliance report of the runs in ``log``."""
    flows = personal_flows(log)
    quality = quality_histories(log)
    findings = [
        *_flow_findings(flows),
        *_lineage_gap_findings(log),
        *_failed_run_findings(log),
        *_assertion_findings(quality),
        *_unclassified_findings(log),
    ]
    findings.sort(key=lambda f: (severity_rank(f.severity), f.framework, f.rule, f.detail))
    return ComplianceReport(
        source=log.source,
        generated=generated or dt.datetime.now(dt.timezone.utc),
        runs=len(log.runs),
        jobs=sorted(log.jobs()),
        first_run=log.runs[0].started if log.runs else None,
        last_run=log.runs[-1].started if log.runs else None,
        datasets=dataset_summaries(log),
        flows=flows,
        quality=quality,
        findings=findings,
        warnings=list(log.warnings)
        + ([f"{log.skipped} line(s) were not OpenLineage run events"] if log.skipped else []),
    )
