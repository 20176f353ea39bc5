"""A validate step's table-level expectations, judged once per run on the whole input.

While the pipeline runs, every bundle of the validate step writes the partial aggregates its
batches added up (:mod:`transforms.gx_table`) under the run's temp folder. After the pipeline
finished and before anything is published, :class:`DatasetExpectations` merges them, judges
each table-level expectation as GX would on the whole dataset, and

* records one entry per expectation in ``summary.data_quality`` (the run summary shows them,
  lineage reports them as ``dataQualityAssertions`` of the step's inputs);
* writes a GX-compatible ``ExpectationSuiteValidationResult`` JSON (table-level expectations
  with their observed values, row-level ones with the run's unexpected counts) beside the
  outputs, for teams that feed GX Data Docs;
* returns a problem, which fails the run (nothing published, previous outputs untouched),
  when an expectation of severity ``critical`` failed, naming it and the observed value.

Severity: the step's ``expectations_severity`` is ``warning`` (default: reported only),
``critical`` (every table-level expectation can fail the run) or ``suite`` (each
expectation's own GX 1.x ``severity`` field, which GX defaults to ``critical``).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from dataclasses import dataclass
from typing import Any

from pipelines.summary import RunSummary

log = logging.getLogger(__name__)

SEVERITIES = ("warning", "critical", "suite")


def aggregates_folder(profile_dir: str, step: str) -> str:
    """Where the step's bundles write their partials: beside the run's column profiles (the
    run's temp folder, removed with them once lineage has read them)."""
    return f"{profile_dir.rsplit('/', 1)[0]}/expectations/{step}"


@dataclass
class DatasetExpectations:
    """Judge one validate step's table-level expectations after the run (a before-publish
    check: called with the run summary, returns a problem or None)."""

    step: str
    suite: Any  # transforms.expectations.ExpectationSuite
    folder: str
    severity: str = "warning"
    result_path: str | None = None  # GX result JSON; None: beside the first output

    def __call__(self, summary: RunSummary) -> str | None:
        from transforms.gx_table import judge

        partial = self._read_partials()
        entries = []
        for index, exp_type, kwargs in self.suite.dataset_level:
            verdict = judge(exp_type, kwargs, partial)
            entries.append(
                {
                    "step": self.step,
                    "index": index,
                    "expectation_type": exp_type,
                    "kwargs": kwargs,
                    "column": kwargs.get("column"),
                    "severity": self._severity(index),
                    **verdict,
                }
            )
        summary.data_quality.extend(entries)
        self._write_result(summary, entries)
        failed = [e for e in entries if not e["success"] and e["severity"] == "critical"]
        if not failed:
            return None
        return f"{self.step}: critical table-level expectations failed on the whole input: " + (
            "; ".join(describe(e) for e in failed)
        )

    def _severity(self, index: int) -> str:
        if self.severity != "suite":
            return self.severity
        meta_severity = self.suite.severity(index)
        return "critical" if meta_severity == "critical" else "warning"

    def _read_partials(self) -> Any:
        from apache_beam.io.filesystems import FileSystems

        from connectors.fileio import match_files
        from transforms.gx_table import Partial, metrics_needed

        merged = Partial(metrics_needed((t, kw) for _, t, kw in self.suite.dataset_level))
        for path in match_files(f"{self.folder}/*.json"):
            with FileSystems.open(path) as f:
                merged.merge(Partial.from_json(json.loads(f.read())))
        if "://" not in self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return merged

    def _write_result(self, summary: RunSummary, entries: list[dict[str, Any]]) -> None:
        path = self.result_path or _beside_outputs(summary, self.step)
        if path is None:
            return
        document = validation_result(self.suite, self.step, summary, entries)
        try:
            from apache_beam.io.filesystems import FileSystems

            with FileSystems.create(path) as out:
                out.write(json.dumps(document, indent=2).encode("utf-8"))
        except OSError as exc:  # a report must not fail the run it reports on
            log.warning("could not write the GX validation result %s: %s", path, exc)
            return
        summary.data_quality_result = path


def describe(entry: dict[str, Any]) -> str:
    """``expect_column_mean_to_be_between(amount, min_value=0, max_value=100): observed 512.3``."""
    from transforms.expectations import expectation_text

    text = expectation_text(entry["expectation_type"], entry["kwargs"])
    text += f": observed {entry['observed_value']!r}"
    return text + (f" ({entry['error']})" if entry.get("error") else "")


def _beside_outputs(summary: RunSummary, step: str) -> str | None:
    """``<output directory>.<step>.gx_validation.json`` of the run's first file output: beside
    it, not in it (an output directory holds only what its committer publishes)."""
    for dataset in summary.outputs:
        on_files = "://" not in dataset.uri or dataset.uri.startswith(("gs://", "s3://"))
        if dataset.kind == "sink" and on_files:
            return f"{dataset.uri.rstrip('/')}.{step}.gx_validation.json"
    return None


def validation_result(
    suite: Any, step: str, summary: RunSummary, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    """The run's verdicts as GX 1.x ``ExpectationSuiteValidationResult.to_json_dict()``.

    Table-level expectations carry their observed value. Row-level ones carry the run's
    ``unexpected_count`` from the step's failure counters, which count per expectation type
    (two expectations of one type share it), over ``element_count`` = the step's input rows;
    their ``success`` applies ``mostly`` to that whole-run share.
    """
    judged = {e["index"]: e for e in entries}
    node = next((n for n in summary.nodes if n.name == step), None)
    rows_in = node.rows_in if node else 0
    rules = node.rules if node else {}
    results = []
    for index, (exp_type, kwargs, meta) in enumerate(suite.expectations):
        config = {"type": exp_type, "kwargs": kwargs, "meta": meta}
        if index in judged:
            e = judged[index]
            result = {"observed_value": e["observed_value"]}
            success = e["success"]
            exception = {"raised_exception": bool(e.get("error")), "exception_message": e.get("error"),
                         "exception_traceback": None}  # fmt: skip
        else:
            unexpected = rules.get(f"gx/{exp_type}", 0)
            mostly = kwargs.get("mostly", 1.0)
            success = rows_in == 0 or (rows_in - unexpected) / rows_in >= mostly
            result = {
                "element_count": rows_in,
                "unexpected_count": unexpected,
                "unexpected_percent": 100.0 * unexpected / rows_in if rows_in else 0.0,
            }
            exception = {"raised_exception": False, "exception_message": None,
                         "exception_traceback": None}  # fmt: skip
        results.append(
            {
                "success": success,
                "expectation_config": config,
                "result": _finite(result),
                "meta": {},
                "exception_info": exception,
            }
        )
    passed = sum(r["success"] for r in results)
    return {
        "success": passed == len(results),
        "results": results,
        "suite_name": suite.name,
        "suite_parameters": {},
        "statistics": {
            "evaluated_expectations": len(results),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(results) - passed,
            "success_percent": 100.0 * passed / len(results) if results else None,
        },
        "meta": {
            "great_expectations_version": "1.x (beamwright)",
            "run_id": {"run_name": summary.run_id, "run_time": summary.started_at},
            "active_batch_definition": {
                "datasource_name": summary.pipeline,
                "data_asset_name": step,
                "batch_identifiers": {},
            },
            "validation_time": summary.started_at,
        },  # fmt: skip
        "id": None,
    }


def _finite(result: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: GX writes such an observed value as a string too."""
    value = result.get("observed_value")
    if isinstance(value, float) and not math.isfinite(value):
        return {**result, "observed_value": str(value)}
    return result


def assertions(summary: RunSummary, step: str) -> list[dict[str, Any]]:
    """The step's table-level verdicts as OpenLineage dataQualityAssertions entries."""
    items = []
    for e in summary.data_quality:
        if e["step"] != step:
            continue
        bounds = {k: v for k, v in e["kwargs"].items() if k != "column"}
        item = {
            "assertion": e["expectation_type"],
            "name": f"gx/{e['expectation_type']}#{e['index']}",
            "success": bool(e["success"]),
            "severity": "error" if e["severity"] == "critical" else "warn",
            "expected": json.dumps(bounds, sort_keys=True),
            "actual": json.dumps(
                _finite({"observed_value": e["observed_value"]})["observed_value"]
            ),
        }
        if e.get("column"):
            item["column"] = e["column"]
        items.append(item)
    return items
