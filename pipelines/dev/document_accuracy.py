"""``beamwright bench --documents``: field-level precision and recall of the
``document_processing`` template on the shipped sample documents, per document type and field.

The template runs as a user runs it (source, OCR, extraction, checks, JSON outputs), then every
output document is compared field by field with ``ground_truth.json`` (written by the generator
beside the documents, from the values it rendered). Per field: a predicted value equal to the
truth is a true positive; a predicted value that differs is a false positive (and, the true value
being missed, a false negative); no value where the truth has one is a false negative. A
document that was dead-lettered or classified as another type predicts nothing for its fields.
Amounts compare to the cent; line items as whole lists.

The sample documents are the project's own: they measure that the readers and extractors work
on every rendering (text PDF, scan, DOCX, HTML, text), not accuracy on documents in the wild.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from templates.base import SAMPLE_DATA

DOCUMENTS = SAMPLE_DATA / "documents"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) < 0.005
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def score(truth: Mapping[str, Any], predicted: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per type and field: tp, fp, fn, precision, recall. ``truth``: ground_truth.json;
    ``predicted``: file name -> the fields an output document holds."""
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for name, entry in truth.items():
        kind, fields = entry["document_type"], entry["fields"]
        if fields is None:
            continue
        got = predicted.get(Path(name).name, {})
        for field, expected in fields.items():
            c = counts.setdefault(kind, {}).setdefault(field, {"tp": 0, "fp": 0, "fn": 0})
            value = got.get(field)
            if value is not None and _same(value, expected):
                c["tp"] += 1
                continue
            if value is not None:
                c["fp"] += 1
            if expected is not None:
                c["fn"] += 1
    report: dict[str, Any] = {}
    for kind, fields in counts.items():
        for field, c in fields.items():
            precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
            recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
            report.setdefault(kind, {})[field] = c | {"precision": precision, "recall": recall}
    return report


def predictions(out: Path) -> dict[str, dict[str, Any]]:
    """File name -> output document, from the template's JSON outputs under ``out``."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted((out / "json").glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            found[row["file_name"]] = row
    return found


def measure(out: Path, paths: list[str] | None = None) -> dict[str, Any]:
    """Run the template on the samples into ``out`` and score its JSON outputs."""
    import templates
    from pipelines.loading import resolve_parameters
    from pipelines.run import run_spec

    template = templates.get_template("document_processing")
    values: dict[str, Any] = {"output_dir": str(out), "output_formats": ["json"]}
    if paths:
        values["document_paths"] = paths
    summary = run_spec(template.expand(resolve_parameters(template.parameters, values)))
    truth = json.loads((DOCUMENTS / "ground_truth.json").read_text())
    return {
        "documents_read": summary.node("documents").rows_in,
        "documents_dead_lettered": summary.node("documents").rows_dead_lettered,
        "reconciled": summary.reconciled,
        "fields": score(truth, predictions(out)),
    }


def table(report: Mapping[str, Any]) -> str:
    lines = [f"{'type':9} {'field':17} {'tp':>3} {'fp':>3} {'fn':>3} {'precision':>9} {'recall':>7}"]
    for kind, fields in report["fields"].items():
        for field, c in fields.items():
            p = "-" if c["precision"] is None else f"{c['precision']:.3f}"
            r = "-" if c["recall"] is None else f"{c['recall']:.3f}"
            lines.append(f"{kind:9} {field:17} {c['tp']:>3} {c['fp']:>3} {c['fn']:>3} {p:>9} {r:>7}")
    lines.append(
        f"documents read {report['documents_read']}, dead-lettered "
        f"{report['documents_dead_lettered']}, counts reconcile: {report['reconciled']}"
    )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="beamwright-documents-") as tmp:
        report = measure(Path(args.workdir or tmp) / "document_processing")
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0
