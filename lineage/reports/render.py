"""Rendering reports: the compliance report as Markdown and self-contained HTML, the access
analysis as a text table.

The compliance report is built once as a small document model (sections of paragraphs and
tables whose cells may carry a status) and written by two writers, so the Markdown and the
HTML can never say different things. The HTML has its styles inline and embeds the lineage
graph as inline SVG: the file is sent to auditors and opened offline, so it loads nothing.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from string import Template

from lineage.reports.access import HOUR_TOLERANCE, MIN_RATIO, AccessReport
from lineage.reports.compliance import ComplianceReport, Evidence, protection_kind
from lineage.reports.events import iso

MAX_QUALITY_RUNS = 50
"""Runs shown per dataset in the quality history (the most recent ones)."""


@dataclass(frozen=True)
class Cell:
    text: str
    status: str = ""
    """A CSS class for the HTML writer: ``pass``, ``fail``, or a severity."""


@dataclass
class Table:
    """Rows of cells under headers; written as a pipe table or an HTML table."""

    headers: list[str]
    rows: list[list[Cell]]


@dataclass(frozen=True)
class Lead:
    """A paragraph opening with a bold phrase (a dataset or classification name)."""

    strong: str
    rest: str = ""


Block = str | Lead | Table


@dataclass
class Section:
    """A titled part of the report."""

    title: str
    level: int = 2
    blocks: list[Block] = field(default_factory=list)


def _cells(values: Iterable[object]) -> list[Cell]:
    return [v if isinstance(v, Cell) else Cell("" if v is None else str(v)) for v in values]


def _when(moment: dt.datetime | None) -> str:
    return iso(moment) if moment else "-"


def _evidence_table(evidence: Sequence[Evidence]) -> Table:
    return Table(
        ["Job", "Run", "Time", "Dataset", "Field", "Note"],
        [
            _cells(
                [
                    str(e.job) if e.job else "-",
                    e.run_id or "-",
                    _when(e.time),
                    e.dataset.uri if e.dataset else "-",
                    e.field or "-",
                    e.note,
                ]
            )
            for e in evidence
        ],
    )


def compliance_sections(report: ComplianceReport) -> list[Section]:
    """The report's content, independent of the output format."""
    counts = report.severity_counts()
    overview = Section("Overview")
    period = f"{_when(report.first_run)} to {_when(report.last_run)}" if report.runs else "-"
    overview.blocks.append(
        f"Source: {report.source}. Generated {iso(report.generated)}. {report.runs} run(s) of "
        f"{len(report.jobs)} job(s), started {period}; {len(report.datasets)} dataset(s)."
    )
    overview.blocks.append(
        Table(
            ["Severity", "Findings"],
            [[Cell(s, s), Cell(str(n))] for s, n in counts.items()],
        )
    )
    sections = [overview]

    findings = Section("Findings")
    findings.blocks.append(
        Table(
            ["#", "Severity", "Framework", "Rule", "Finding"],
            [
                [
                    Cell(str(index)),
                    Cell(f.severity, f.severity),
                    Cell(f.framework),
                    Cell(f.rule),
                    Cell(f.title),
                ]
                for index, f in enumerate(report.findings, 1)
            ],
        )
        if report.findings
        else "No findings."
    )
    sections.append(findings)
    for index, finding in enumerate(report.findings, 1):
        sections.append(
            Section(
                f"{index}. {finding.severity.upper()} {finding.rule}: {finding.title}",
                level=3,
                blocks=[
                    finding.detail,
                    Lead("Recommendation: ", finding.recommendation),
                    *(
                        [Lead("Also concerns: ", ", ".join(finding.controls))]
                        if finding.controls
                        else []
                    ),
                    _evidence_table(finding.evidence),
                ],
            )
        )

    classified = Section("Datasets by classification")
    if not report.datasets:
        classified.blocks.append("No datasets.")
    for classification, summaries in report.by_classification().items():
        classified.blocks.append(Lead(classification, f" ({len(summaries)} dataset(s))"))
        rows = []
        for s in summaries:
            gov = s.governance
            personal = gov.personal_fields() if gov else {}
            rows.append(
                _cells(
                    [
                        s.dataset.uri,
                        ", ".join(gov.frameworks) if gov and gov.frameworks else "-",
                        ", ".join(
                            f"{name} ({f.classification}"
                            + (f", {f.protection})" if f.protection else ")")
                            for name, f in sorted(personal.items())
                        )
                        or "-",
                        ", ".join(sorted(str(j) for j in s.readers)) or "-",
                        ", ".join(sorted(str(j) for j in s.writers)) or "-",
                        _when(s.last_seen),
                    ]
                )
            )
        classified.blocks.append(
            Table(
                ["Dataset", "Frameworks", "Personal fields", "Read by", "Written by", "Last seen"],
                rows,
            )
        )
    sections.append(classified)

    flows = Section("Where personal data flows")
    flows.blocks.append(
        "One row per output field holding personal data, per job, over all runs: fields "
        "classified PII, PHI, SPI or PCI by their dataset's governance, or derived from such "
        "fields through DIRECT column lineage. Protection comes from a masking transformation "
        "on every personal path, the protection the output's governance facet declares, or "
        "the output's audience masking the field."
    )
    flows.blocks.append(
        Table(
            [
                "Job",
                "Output field",
                "Sink",
                "Personal sources",
                "Class",
                "Transformations",
                "Protection",
                "Unprotected runs",
                "Last run",
            ],
            [
                [
                    Cell(str(f.job)),
                    Cell(f.target_label()),
                    Cell(f.sink),
                    Cell(f.source_label()),
                    Cell(f.classification),
                    Cell(f.latest.transformations),
                    Cell(f.protection_label, "pass" if f.latest.protected else "fail"),
                    Cell(
                        f"{len(f.unprotected)} / {len(f.observations)}",
                        "fail" if f.unprotected else "pass",
                    ),
                    Cell(_when(f.latest.run.started)),
                ]
                for f in report.flows
            ],
        )
        if report.flows
        else "No personal data reaches any output field."
    )
    sections.append(flows)

    protections = Section("Protections in use")
    used: dict[str, list[str]] = {}
    for f in report.flows:
        if f.latest.protected:
            name = f.latest.protection or "masking transformation"
            used.setdefault(name, []).append(f.target_label())
    protections.blocks.append(
        Table(
            ["Protection", "Kind", "Flows", "Output fields"],
            [
                _cells([name, protection_kind(name), len(targets), ", ".join(sorted(set(targets)))])
                for name, targets in sorted(used.items())
            ],
        )
        if used
        else "No protected flows."
    )
    sections.append(protections)

    quality = Section("Quality assertion history")
    if not report.quality:
        quality.blocks.append("No dataQualityAssertions facets in the events.")
    for history in report.quality:
        keys = history.assertion_keys()
        records = history.records[-MAX_QUALITY_RUNS:]
        shown = f"; the last {len(records)} shown" if len(records) < len(history.records) else ""
        quality.blocks.append(
            Lead(
                history.dataset.uri,
                f": {len(history.records)} run(s), {history.failures()} failed assertion "
                f"result(s){shown}",
            )
        )
        rows = []
        for record in records:
            cells = [
                Cell(_when(record.run.started)),
                Cell(str(record.run.job)),
                Cell(record.run.run_id),
                Cell(record.run.state, "fail" if record.run.failed else ""),
            ]
            for key in keys:
                result = record.results.get(key)
                if result is None:
                    cells.append(Cell("-"))
                elif result.success:
                    cells.append(Cell("pass", "pass"))
                else:
                    cells.append(Cell(f"FAIL ({result.severity or 'error'})", "fail"))
            rows.append(cells)
        quality.blocks.append(Table(["Run started", "Job", "Run", "State", *keys], rows))
    sections.append(quality)

    if report.warnings:
        sections.append(Section("Warnings", blocks=list(report.warnings)))
    return sections


# --- Markdown --------------------------------------------------------------------------------


def _md_text(text: str) -> str:
    """Text with the characters Markdown would act on inside a line escaped."""
    for char in ("\\", "*", "`", "<", "["):
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _md_cell(text: str) -> str:
    return _md_text(text).replace("|", "\\|")


def _md_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.headers) + " |",
        "|" + "---|" * len(table.headers),
    ]
    lines += ["| " + " | ".join(_md_cell(c.text) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _md_block(block: Block) -> str:
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Lead):
        return f"**{_md_text(block.strong)}**{_md_text(block.rest)}"
    return _md_text(block)


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    """The report as GitHub-flavoured Markdown, for reviews in a repository or a ticket."""
    out = [f"# {title}", ""]
    for section in sections:
        out += ["#" * section.level + " " + _md_text(section.title), ""]
        for block in section.blocks:
            out += [_md_block(block), ""]
    return "\n".join(out)


# --- HTML ------------------------------------------------------------------------------------

_HTML = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #111827;
  margin: 24px; font-size: 14px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 32px;
  border-bottom: 1px solid #e5e7eb; }
table { border-collapse: collapse; margin: 8px 0 16px 0; }
th, td { border: 1px solid #d1d5db; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
td.pass { background: #dcfce7; } td.fail { background: #fee2e2; font-weight: bold; }
td.high { background: #dc2626; color: #ffffff; font-weight: bold; }
td.medium { background: #f59e0b; font-weight: bold; }
td.low { background: #fde68a; } td.info { background: #e0f2fe; }
.graph { overflow: auto; border: 1px solid #e5e7eb; }
</style>
</head>
<body>
<h1>$title</h1>
$body
</body>
</html>
"""
)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for row in table.rows:
        cells = "".join(
            f'<td class="{c.status}">{html.escape(c.text)}</td>'
            if c.status
            else f"<td>{html.escape(c.text)}</td>"
            for c in row
        )
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _html_block(block: Block) -> str:
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Lead):
        return f"<p><strong>{html.escape(block.strong)}</strong>{html.escape(block.rest)}</p>"
    return f"<p>{html.escape(block)}</p>"


def to_html(title: str, sections: Sequence[Section], graph_svg: str | None = None) -> str:
    """The report as one HTML file; ``graph_svg`` (trusted, generated) is embedded as is."""
    body = []
    for section in sections:
        body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        for block in section.blocks:
            body.append(_html_block(block))
    if graph_svg:
        body.append("<h2>Lineage graph</h2>")
        body.append(f'<div class="graph">{graph_svg}</div>')
    return _HTML.substitute(title=html.escape(title), body="\n".join(body))


# --- access ----------------------------------------------------------------------------------


def _text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(widths[i]) if i in right else v.ljust(widths[i]) for i, v in enumerate(values)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def access_text(report: AccessReport) -> str:
    """The access analysis as plain text for a terminal."""
    out = [
        f"Access from {iso(report.start)} to {iso(report.end)}, per principal; baselines: the "
        f"{report.baseline_days} day(s) before each day (UTC)",
        "",
    ]
    rows = [
        [
            a.principal.name,
            a.principal.type,
            a.dataset.uri,
            str(a.reads),
            str(a.writes),
            "streaming" if a.streaming else _count(a.rows_read),
            _count(a.rows_written),
            ", ".join(sorted(a.audiences)) or "-",
        ]
        for a in report.accesses
    ]
    out.append(
        _text_table(
            [
                "PRINCIPAL",
                "TYPE",
                "DATASET",
                "READS",
                "WRITES",
                "ROWS READ",
                "ROWS WRITTEN",
                "AUDIENCE",
            ],
            rows,
            {3, 4, 5, 6},
        )
        if rows
        else "No access in the window."
    )
    out += [
        "",
        f"Anomalies ({len(report.anomalies)}): volume = daily value > median + 5.19 MAD of the "
        f"baseline days and > {MIN_RATIO:g}x the median; time of day = start more than "
        f"{HOUR_TOLERANCE} h outside the usual span",
    ]
    for a in report.anomalies:
        where = f" {a.dataset.uri}" if a.dataset else ""
        out.append(f"  {iso(a.when)}  {a.kind}  {a.principal}{where}")
        out.append(f"      observed: {a.observed}")
        out.append(f"      baseline: {a.baseline}")
        out.append(f"      why:      {a.reason}")
        out.append(f"      controls: {', '.join(str(c) for c in a.controls)}")
    out += ["", "This review supports: " + ", ".join(str(c) for c in report.review_controls)]
    if report.unchecked:
        out += ["", "Not checked (too little history):"]
        out += [f"  {u}" for u in report.unchecked]
    return "\n".join(out) + "\n"


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else "-"
