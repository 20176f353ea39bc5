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
data). Each framework protects some of these classes (``PROTECTION_RULES``). Personal data
*flows* to an output field when a DIRECT column-lineage edge links it to an input field that
is personal: classified so by its dataset's governance, or, when no governance classifies it,
derived from a personal field through earlier DIRECT edges (transitively, across jobs). The
output's own classification of a field only counts for fields no lineage explains: a
dead-letter payload classified PII carries the personal fields feeding it, not ``amount`` or
``status`` (the demo listed 120 such rows before this rule, 7 after). DIRECT transformations
carry values, INDIRECT ones (filters, join keys, sorts) only influence which rows are
written, so they are not flows. Flows are reported per output field, with the personal input
fields feeding it: the output field is what is exposed and what a fix changes.

A flow is *protected* when every personal edge into it is a masking transformation, the
output's governance facet names a protection for the field, or the output's audience facet
(``beamwright_audience``) lists the field as masked; any of these is enough, because they are
written by different steps. Hashing and keyed tokens count as pseudonymisation, which GDPR
still treats as personal data (Recital 26); redaction, partial masks, generalisation count
as masking.

Every finding carries a *recommendation*: what to change, concretely. For an unprotected
flow, the field, a strategy for its class (``SUGGESTED_STRATEGY``), the sink (its spec name
from the ``symlinks`` facet), whether the job already has a mask step to extend, or an
audience cleared for the data; for the other rules, what to re-run, fix or classify.

Findings are evaluated per run and aggregated, so a problem fixed in later runs is still
reported (at lower severity): data written while it was unprotected still exists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from lineage.reports.events import (
    AUDIENCE_FACET,
    GOVERNANCE_FACET,
    DatasetId,
    DatasetUse,
    EventLog,
    JobId,
    Run,
    iso,
)

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


FieldRef = tuple[DatasetId, str]
"""A field of a dataset."""


@dataclass(frozen=True, order=True)
class FlowSource:
    """A personal input field feeding an output field, and why it counts as personal."""

    dataset: DatasetId
    field: str
    classification: str
    derived: bool = False
    """Not classified itself: fed by a classified field through column lineage."""

    def label(self) -> str:
        return f"{self.dataset.uri}#{self.field}" + (" (derived)" if self.derived else "")


@dataclass
class FlowObservation:
    """One output field holding personal data in one run, and what protected it."""

    run: Run
    classes: frozenset[str]
    transformations: str
    masked: bool
    protection: str | None
    frameworks: tuple[str, ...]
    sources: tuple[FlowSource, ...] = ()

    @property
    def protected(self) -> bool:
        return self.masked or self.protection is not None


@dataclass
class PiiFlow:
    """Personal data reaching one output field of one job, over runs.

    One flow per output field, not per input field: the output field is what is exposed and
    what a fix changes, and four monthly input files feeding one ``email`` column are one
    exposure, not four. ``sources`` lists the personal input fields; it is empty when only the
    output's governance facet classifies the field (no column lineage to it).
    """

    job: JobId
    target: DatasetId
    target_field: str
    sink: str
    """The spec's name for the output (its ``symlinks`` facet), else the dataset URI."""
    observations: list[FlowObservation] = field(default_factory=list)

    @property
    def latest(self) -> FlowObservation:
        return self.observations[-1]

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(c for o in self.observations for c in o.classes)

    @property
    def classification(self) -> str:
        """The classes as one label, most specific (PCI, PHI, SPI) first."""
        return "/".join(sorted(self.classes, key=lambda c: (c == "PII", c)))

    @property
    def sources(self) -> list[FlowSource]:
        return sorted({s for o in self.observations for s in o.sources})

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
        """Personal sources grouped by field name: ``email from a.csv, b.csv; phone from c``."""
        if not self.sources:
            return "(classified by the output's governance; no column lineage)"
        by_field: dict[str, list[str]] = {}
        for source in self.sources:
            name = source.field + (" (derived)" if source.derived else "")
            by_field.setdefault(name, []).append(source.dataset.short_name)
        return "; ".join(f"{name} from {', '.join(sets)}" for name, sets in by_field.items())

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


def sink_name(use: DatasetUse) -> str:
    """The spec's node name of an output (``symlinks``: ``<pipeline>.<node>``), else its URI."""
    facet = use.facet("symlinks")
    identifiers = facet.get("identifiers") if facet else None
    if isinstance(identifiers, list):
        for item in identifiers:
            if isinstance(item, Mapping) and item.get("namespace") == "beamwright":
                return str(item.get("name", "")).rsplit(".", 1)[-1] or use.dataset.uri
    return use.dataset.uri


def audience_masked(use: DatasetUse) -> tuple[str | None, frozenset[str]]:
    """The output's audience and the fields masked for it (``beamwright_audience`` facet)."""
    facet = use.facet(AUDIENCE_FACET)
    if facet is None:
        return None, frozenset()
    masked = facet.get("masked_fields")
    fields = frozenset(str(f) for f in masked) if isinstance(masked, list) else frozenset()
    return (str(facet["name"]) if facet.get("name") else None), fields


def derived_personal(
    log: EventLog, catalogue: Mapping[DatasetId, Governance]
) -> dict[FieldRef, str]:
    """Fields no governance classifies that DIRECT column lineage feeds from personal fields,
    transitively across jobs (job A writes ``staging#mail`` from ``raw#email``, job B reads
    ``staging#mail``): the class they inherit. A field some governance classifies keeps that
    classification, personal or not: the spec's word wins over inference."""
    edges = {
        (edge.source, edge.source_field, edge.target, edge.target_field)
        for run in log.runs
        for output in run.outputs.values()
        for edge in column_edges(output)
        if edge.target_field is not None and edge.direct
    }
    derived: dict[FieldRef, str] = {}
    changed = True
    while changed:
        changed = False
        for source, source_field, target, target_field in sorted(edges):
            if (target, target_field) in derived or _declared(catalogue, target, target_field):
                continue
            cls = _class_of(catalogue, derived, source, source_field)
            if cls is not None:
                derived[(target, target_field)] = cls
                changed = True
    return derived


def _declared(catalogue: Mapping[DatasetId, Governance], dataset: DatasetId, name: str) -> bool:
    gov = catalogue.get(dataset)
    return gov is not None and name in gov.fields


def _class_of(
    catalogue: Mapping[DatasetId, Governance],
    derived: Mapping[FieldRef, str],
    dataset: DatasetId,
    name: str,
) -> str | None:
    """The personal class of a field: its classification, else what it derives from."""
    gov = catalogue.get(dataset)
    if gov is not None and name in gov.fields:
        info = gov.fields[name]
        return info.classification if info.personal else None
    return derived.get((dataset, name))


FlowKey = tuple[JobId, DatasetId, str]
"""job, target dataset and field"""


def personal_flows(log: EventLog) -> list[PiiFlow]:
    """Every output field holding personal data, observed run by run.

    An input field is personal when its dataset's governance classifies it PII, PHI, SPI or
    PCI, or (not classified at all) when column lineage derives it from such a field. An
    output's own classification of a field counts only for fields no personal input reaches
    and no lineage explains: a dead-letter payload classified PII carries the personal fields
    that feed it, not ``amount`` or ``status``.
    """
    catalogue = dataset_governance(log)
    derived = derived_personal(log, catalogue)
    flows: dict[FlowKey, PiiFlow] = {}
    for run in log.runs:
        for output in run.outputs.values():
            target_gov = governance_of(output)
            target_fields = target_gov.fields if target_gov else {}
            audience, audience_fields = audience_masked(output)
            edges_by_field: dict[str, list[ColumnEdge]] = {}
            for edge in column_edges(output):
                if edge.target_field is not None and edge.direct:
                    edges_by_field.setdefault(edge.target_field, []).append(edge)
            for name in sorted(set(edges_by_field) | set(target_fields)):
                sources, personal_edges, frameworks = (
                    [],
                    [],
                    set(target_gov.frameworks if target_gov else ()),
                )
                for edge in edges_by_field.get(name, []):
                    source_gov = governance_of(run.inputs.get(edge.source)) or catalogue.get(
                        edge.source
                    )
                    known = {edge.source: source_gov} if source_gov else {}
                    cls = _class_of(known or catalogue, derived, edge.source, edge.source_field)
                    if cls is None:
                        continue
                    is_derived = not (source_gov and edge.source_field in source_gov.fields)
                    sources.append(FlowSource(edge.source, edge.source_field, cls, is_derived))
                    personal_edges.append(edge)
                    frameworks.update(source_gov.frameworks if source_gov else ())
                target_class = target_fields.get(name)
                if not sources and not (
                    target_class and target_class.personal and name not in edges_by_field
                ):
                    continue
                classes = {s.classification for s in sources} or {target_class.classification}
                protection = target_class.protection if target_class else None
                if protection is None and name in audience_fields:
                    protection = f"masked for audience {audience}"
                key: FlowKey = (run.job, output.dataset, name)
                flow = flows.setdefault(
                    key, PiiFlow(run.job, output.dataset, name, sink_name(output))
                )
                flow.observations.append(
                    FlowObservation(
                        run,
                        frozenset(classes),
                        "; ".join(sorted({e.describe() for e in personal_edges})) or "unknown",
                        bool(personal_edges) and all(e.masked for e in personal_edges),
                        protection,
                        tuple(sorted(frameworks)),
                        tuple(sorted(set(sources))),
                    )
                )
    return sorted(flows.values(), key=lambda f: (str(f.job), f.target, f.target_field))


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


def schema_fields(facet: Mapping[str, object] | None) -> frozenset[str] | None:
    """Top-level field names in a ``schema`` facet; None without one."""
    fields = facet.get("fields") if facet else None
    if not isinstance(fields, list):
        return None
    return frozenset(str(f["name"]) for f in fields if isinstance(f, Mapping) and "name" in f)


def _owns(columns: frozenset[str] | None, column: str | None) -> bool:
    """Whether an assertion on ``column`` can be about a dataset with these fields: a rule
    on a field the dataset does not have (``shipping.address`` checks ``shipping``) came
    from another dataset, as events written before per-source assertion counts show."""
    return columns is None or column is None or column.split(".", 1)[0] in columns


def quality_histories(log: EventLog) -> list[QualityHistory]:
    """Assertion results per dataset and run, from inputs and outputs alike; each dataset
    keeps only assertions on its own fields (see :func:`_owns`), and a run that lists the
    dataset twice (read and written) gives one record."""
    histories: dict[DatasetId, QualityHistory] = {}
    for run in log.runs:
        by_dataset: dict[DatasetId, dict[str, AssertionResult]] = {}
        for use in (*run.inputs.values(), *run.outputs.values()):
            facet = use.facet("dataQualityAssertions")
            items = facet.get("assertions") if facet else None
            if not isinstance(items, list):
                continue
            columns = schema_fields(
                use.facet("schema") or log.latest_dataset_facet(use.dataset, "schema")
            )
            results = by_dataset.setdefault(use.dataset, {})
            for item in items:
                if not isinstance(item, Mapping) or "assertion" not in item:
                    continue
                column = str(item["column"]) if item.get("column") else None
                if not _owns(columns, column):
                    continue
                key = assertion_key(item)
                results[key] = AssertionResult(
                    key,
                    item.get("success") is True,
                    column,
                    str(item["severity"]).lower() if item.get("severity") else None,
                    str(item["expected"]) if item.get("expected") is not None else None,
                    str(item["actual"]) if item.get("actual") is not None else None,
                )
        for dataset, results in by_dataset.items():
            if results:
                history = histories.setdefault(dataset, QualityHistory(dataset))
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
    recommendation: str
    """What to change, concretely (which step, field, strategy, audience, dataset)."""

    @property
    def controls(self) -> tuple[str, ...]:
        """SOC 2 and ISO/IEC 27001:2022 controls the finding is evidence against, beside its
        own framework's rule (``CROSS_CONTROLS``)."""
        suffix = self.rule.split("-")[-1]
        return CROSS_CONTROLS.get(suffix, ())


CROSS_CONTROLS: Mapping[str, tuple[str, ...]] = {
    # personal data reaching an output unmasked
    "UNPROTECTED": ("ISO27001 A.8.11 data masking", "SOC2 CC6.1", "SOC2 C1.1"),
    # whether it does cannot be shown
    "MISSING": ("ISO27001 A.8.11 data masking", "ISO27001 A.5.12 classification"),
    # a dataset in a regulated run without classification
    "UNCLASSIFIED": ("ISO27001 A.5.12 classification", "SOC2 C1.1"),
}
"""By the rule's last part (``GDPR-PII-UNPROTECTED`` -> ``UNPROTECTED``). SOX findings (failed
runs, failed assertions) stay SOX only: they concern processing, not access or masking."""


def _evidence(
    run: Run, dataset: DatasetId | None, field_name: str | None, note: str = ""
) -> Evidence:
    return Evidence(run.job, run.run_id, run.started, dataset, field_name, note)


SUGGESTED_STRATEGY = {
    "PCI": "partial",
    "PHI": "redact",
    "SPI": "redact",
    "PII": "pseudonymize",
}
"""What to recommend per class: card numbers keep their last four digits (PCI DSS 3.4.1 allows
showing at most BIN and last four), health and special-category data go, other personal data
is pseudonymised so joins across outputs keep working."""


def job_mask_strategies(log: EventLog) -> dict[JobId, set[str]]:
    """Masking strategies each job already applies somewhere: from masking transformations
    (``masked: <strategy>``) and the protections its outputs' governance declares."""
    found: dict[JobId, set[str]] = {}
    for run in log.runs:
        for output in run.outputs.values():
            for edge in column_edges(output):
                for t in edge.transformations:
                    if t.masking and (t.description or "").startswith("masked: "):
                        found.setdefault(run.job, set()).add(t.description.split(": ", 1)[1])
            if (gov := governance_of(output)) is not None:
                protections = {f.protection for f in gov.fields.values() if f.protection}
                found.setdefault(run.job, set()).update(protections)
    return found


def flow_recommendation(flow: PiiFlow, strategies_in_job: Iterable[str] = ()) -> str:
    """What to change so ``flow`` is protected: the field, the strategy, the sink, the audience."""
    strategy = next(
        (SUGGESTED_STRATEGY[c] for c in ("PCI", "PHI", "SPI", "PII") if c in flow.classes),
        "redact",
    )
    origin = f" ({flow.source_label()})" if flow.sources else ""
    existing = sorted(set(strategies_in_job))
    where = (
        f"add it to the mask step job {flow.job} already has (it applies {', '.join(existing)})"
        if existing
        else f"add a mask step to job {flow.job} before sink {flow.sink}"
    )
    return (
        f"Mask field {flow.target_field}{origin} with strategy {strategy} before sink "
        f"{flow.sink}: {where}. Or, if readers of {flow.sink} may see it, give sink "
        f"{flow.sink} an audience (governance.audiences) cleared for {flow.classification} data, "
        f"and make the rule conditional (when: security_level_below) for the other audiences."
    )


def _flow_findings(flows: Iterable[PiiFlow], strategies: Mapping[JobId, set[str]]) -> list[Finding]:
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
        if still:
            recommendation = flow_recommendation(flow, strategies.get(flow.job, ()))
        else:
            recommendation = (
                f"The field is masked now ({flow.protection_label}); the {len(unprotected)} "
                f"earlier run(s) left unmasked values in {flow.target.uri}: rewrite or purge "
                f"that output (e.g. re-run job {flow.job} over the same inputs)."
            )
        for check in PROTECTION_RULES:
            if check.framework not in flow.frameworks or not (flow.classes & check.classes):
                continue
            evidence = [
                _evidence(last_bad.run, flow.target, flow.target_field, last_bad.transformations)
            ]
            evidence += [
                _evidence(
                    last_bad.run,
                    s.dataset,
                    s.field,
                    "derived source field" if s.derived else "source field",
                )
                for s in last_bad.sources
            ]
            findings.append(
                Finding(
                    check.rule,
                    check.framework,
                    "high" if still else "medium",
                    check.title,
                    f"{flow.classification} field {flow.target_label()} (sink {flow.sink}) in "
                    f"job {flow.job}, from {flow.source_label()}: no masking transformation and "
                    f"no protection declared, in {runs}; {status}.",
                    evidence,
                    recommendation,
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
                f"Make job {job} emit column lineage for {dataset.uri}: every built-in kind "
                "does, so a step or sink of a plugin kind on the way lacks a lineage rule in its "
                f"KIND; until then, mask {listed} before that sink.",
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
                recommendation = (
                    f"Fix the cause ({message}) and re-run job {job}; until a run completes, "
                    "the outputs it should have written are missing or stale for SOX reporting."
                )
            else:
                severity, status = "info", f"recovered by run {recovery.run_id}"
                evidence.append(_evidence(recovery, None, None, "first later successful run"))
                recommendation = (
                    f"No change needed: run {recovery.run_id} completed. Keep both runs' "
                    "lineage as the audit trail of the failure and its recovery."
                )
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
                    recommendation,
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
                recommendation = (
                    f"No change needed: {key} passes again. The rows that failed it are in "
                    f"the dead letters of run {run.run_id} (reason {key}); replay them once fixed."
                )
            else:
                severity = "medium" if result.severity == "warn" else "high"
                status = "no later run passed it"
                column = f" on field {result.column}" if result.column else ""
                recommendation = (
                    f"Look at the dead letters of run {run.run_id} with reason {key}: fix the "
                    f"data producing {history.dataset.uri}, or, if the rule is wrong, change "
                    f"{key}{column} in the validate step of job {run.job}."
                )
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
                    recommendation,
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
            f"Classify {dataset.uri} in job {run.job}'s spec: governance.classification and "
            "governance.fields for its personal fields (or the source/sink's own "
            "classification), so its fields can be checked.",
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
        *_flow_findings(flows, job_mask_strategies(log)),
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
