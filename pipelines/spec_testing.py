"""Running a spec's test cases (``beamwright test``): mock the sources, sandbox the outputs,
run on the local runner, compare.

Each case runs the real pipeline, changed only where it touches the outside world:

- **Sources** are replaced by what the case mocks. A mocked ``file`` source keeps its kind,
  format and options: inline rows are *written* to a temporary file in the source's format
  (JSONL and CSV rows as written text, so a value the schema refuses reaches the validate step
  as it would from a real file; Parquet and Avro through the project's own writers), and the
  source's real decoder reads it back. Injecting Arrow batches instead would skip the decoding
  (and its dead letters) that a test should cover. Any other source kind (Kafka) becomes a
  ``file`` source of the mocked rows as JSON lines: no broker is ever contacted, and the rows are
  the decoded message values. A source the case does not mock is refused (path + hint).
- **Sinks** write into a temporary directory: file and report sinks keep their kind and format
  with their paths moved; other kinds (Kafka) become JSON-lines file sinks. Dead letters go to
  JSON lines there too (keeping ``redact``), lineage to a file in it.
- **The run** uses ``direct`` (Beam's FnApiRunner, pinned: no Prism download), one worker, no
  runner options, and an error threshold of 1.0, so the outputs of a case that rejects most
  rows are still published and compared: a test checks rows and counts, not the threshold.

Then :mod:`pipelines.spec_diff` compares the case's expectations with the published outputs
and the run's summary.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.errors import BeamwrightError, did_you_mean
from pipelines.spec import PipelineSpec
from pipelines.spec_test_targets import TargetCase
from pipelines.spec_tests import MockInput, SpecTestCase, cases_problems


class SpecTestError(BeamwrightError, ValueError):
    """The tests themselves are invalid (exit code 2): a case names an unknown node, leaves a
    source unmocked, or mocks it with something that cannot be written in its format."""


@dataclass
class Actual:
    """What a case's run produced: rows per sink, dead letters, and counts per node."""

    sinks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # {step, rule, payload}
    nodes: dict[str, Any] = field(default_factory=dict)  # name -> NodeCounts


@dataclass
class CaseResult:
    name: str
    differences: list[str]
    elapsed_seconds: float
    error: str | None = None  # the run itself failed
    actual: Actual | None = None
    workdir: str | None = None  # kept (``keep``): the case's inputs, outputs and lineage

    @property
    def passed(self) -> bool:
        return self.error is None and not self.differences


def select_cases(cases: Sequence[TargetCase], only: str | None, origin: str) -> list[TargetCase]:
    """The cases to run (each with the spec it runs); SpecTestError when there are none or
    the tests are invalid."""
    if not cases:
        raise SpecTestError(
            "has no test cases",
            where=origin,
            hint="add a 'tests:' block with named cases (see README, 'Testing your pipeline')",
        )
    problems = cases_problems([(c.spec, c.case) for c in cases])
    if problems:
        raise SpecTestError("\n".join(f"  - {p}" for p in problems), where=f"{origin} tests")
    if only is None:
        return list(cases)
    names = [c.case.name for c in cases]
    if only not in names:
        raise SpecTestError(
            f"no case named '{only}'", where="--case", hint=did_you_mean(only, names)
        )
    return [c for c in cases if c.case.name == only]


def run_case(
    spec: PipelineSpec, case: SpecTestCase, base_dir: Path, *, keep: bool = False
) -> CaseResult:
    """Run one case in a temporary directory (removed afterwards unless ``keep``)."""
    from pipelines.run import RunFailed, run_spec
    from pipelines.spec_diff import compare_counts, compare_dead_letters, compare_rows

    workdir = Path(tempfile.mkdtemp(prefix=f"beamwright-test-{case.name}-"))
    started = time.perf_counter()
    try:
        sandboxed = sandbox(spec, case, base_dir, workdir)
        try:
            summary = run_spec(sandboxed, event_log=str(workdir / "lineage" / "events.jsonl"))
        except RunFailed as exc:
            return CaseResult(
                case.name,
                [],
                time.perf_counter() - started,
                error=exc.summary.error or str(exc),
                workdir=str(workdir) if keep else None,
            )
        actual = read_actual(summary)
        differences: list[str] = []
        for name, expected in case.outputs.items():
            differences += compare_rows(expected, actual.sinks.get(name, []), f"sink {name}")
        if case.dead_letters is not None:
            differences += compare_dead_letters(case.dead_letters, actual.dead_letters)
        differences += compare_counts(case.summary, actual.nodes)
        return CaseResult(
            case.name,
            differences,
            time.perf_counter() - started,
            actual=actual,
            workdir=str(workdir) if keep else None,
        )
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- the sandbox


def sandbox(spec: PipelineSpec, case: SpecTestCase, base_dir: Path, workdir: Path) -> PipelineSpec:
    """``spec`` with every source mocked from ``case`` and every output under ``workdir``."""
    from pydantic import ValidationError

    from pipelines import registry
    from pipelines.loading import validation_problems

    data = spec.model_dump(mode="python", by_alias=True)
    data["tests"] = []
    data["run"].update(
        runner="direct",
        direct_num_workers=1,
        runner_options={},
        error_threshold=1.0,
        temp_location=str(workdir / "tmp"),
    )
    data["lineage"]["transport"] = {
        "type": "file",
        "log_file_path": str(workdir / "lineage" / "events.jsonl"),
        "append": True,
    }
    (workdir / "lineage").mkdir(parents=True, exist_ok=True)
    for i, (node, raw) in enumerate(zip(spec.sources, data["sources"], strict=True)):
        where = f"tests.{case.name}.inputs.{node.name}"
        mock = case.inputs.get(node.name)
        if mock is None:
            raise SpecTestError(
                f"source '{node.name}' is not mocked, and tests never read real sources",
                where=f"tests.{case.name}.inputs",
                hint=f"add inputs.{node.name}: {{rows: [...]}} or {{file: PATH}}",
            )
        data["sources"][i] = _mocked_source(node, raw, mock, base_dir, workdir, where)
    for i, node in enumerate(spec.sinks):
        data["sinks"][i] = _redirected_sink(node, data["sinks"][i], registry.kind_of(node), workdir)
    data["dead_letter"] = {
        "type": "file",
        "path": str(workdir / "dead_letters"),
        "format": "jsonl",
        "redact": spec.dead_letter.redact,
    }
    try:
        return PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecTestError(
            "; ".join(validation_problems(exc)), where=f"tests.{case.name} (sandboxed spec)"
        ) from None


def _mocked_source(
    node: Any, raw: dict[str, Any], mock: MockInput, base_dir: Path, workdir: Path, where: str
) -> dict[str, Any]:
    from connectors.files.registry import infer_format

    is_file = getattr(node, "type", None) == "file"
    options = dict(raw.get("options") or {}) if is_file else {}
    if mock.file is not None:
        path = Path(mock.file)
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            raise SpecTestError(
                f"mock file {path} does not exist",
                where=f"{where}.file",
                hint="paths are relative to the spec file (a template's: to its tests file)",
            )
        try:
            fmt = (raw.get("format") if is_file else None) or infer_format(str(path))
        except ValueError as exc:
            raise SpecTestError(str(exc), where=f"{where}.file") from None
    else:
        if is_file:
            try:
                fmt = raw.get("format") or infer_format(str(raw["path"]))
            except ValueError:
                fmt = "jsonl"
        else:
            fmt = "jsonl"
        path = workdir / "inputs" / node.name / f"{node.name}.{fmt}"
        write_rows(mock.rows or [], path, fmt, options, where)
    if is_file:
        return {**raw, "path": str(path), "format": fmt, "allow_empty": True}
    return {
        "type": "file",
        "name": node.name,
        "path": str(path),
        "format": fmt,
        "allow_empty": True,
    }


def write_rows(
    rows: Sequence[dict[str, Any]], path: Path, fmt: str, options: dict[str, Any], where: str
) -> None:
    """Write mocked rows as a file in ``fmt``, the way a producer of that format would."""
    from pipelines.spec_diff import plain

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(plain(row), ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        _write_csv(rows, path, options)
        return
    import pyarrow as pa

    from connectors.files.registry import make_format

    try:
        table = pa.Table.from_pylist([dict(r) for r in rows])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SpecTestError(
            f"the rows cannot be a {fmt} file: {exc}",
            where=f"{where}.rows",
            hint=f"give each field one type in every row, or mock with a {fmt} file",
        ) from None
    with path.open("wb") as sink:
        writer = make_format(fmt, **options).open_writer(sink)
        writer.write(table)
        writer.close()


def _write_csv(rows: Sequence[dict[str, Any]], path: Path, options: dict[str, Any]) -> None:
    from pipelines.spec_diff import plain

    columns: dict[str, None] = {}
    for row in rows:
        for key in row:
            columns.setdefault(str(key), None)
    null = (options.get("null_values") or [""])[0]

    def text(value: Any) -> str:
        if value is None:
            return null
        if isinstance(value, bool):
            return "true" if value else "false"
        value = plain(value)
        return value if isinstance(value, str) else json.dumps(value)

    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(
            f,
            delimiter=options.get("delimiter", ","),
            quotechar=options.get("quote_char", '"'),
            lineterminator="\n",
        )
        if options.get("header", True):
            writer.writerow(list(columns))
        for row in rows:
            writer.writerow([text(row.get(c)) for c in columns])


def _redirected_sink(node: Any, raw: dict[str, Any], kind: Any, workdir: Path) -> dict[str, Any]:
    """The sink writing under ``workdir/sinks/<name>``: its path keys moved there, or, for a
    kind that writes no files (Kafka), a JSON-lines file sink in its place."""
    base = workdir / "sinks" / node.name
    paths = list(kind.paths(node))
    if not paths:
        return {
            "type": "file",
            "name": node.name,
            "input": raw.get("input"),
            "path": str(base),
            "format": "jsonl",
        }
    out = dict(raw)
    for key, path, is_file in paths:
        out[key] = str(base / Path(path).name) if is_file else str(base / "out")
    return out


# --------------------------------------------------------------------------- what came out


def read_actual(summary: Any) -> Actual:
    """The published sinks' rows, the dead letters and the node counts of a run."""
    actual = Actual(nodes={n.name: n for n in summary.nodes})
    for dataset in summary.outputs:
        if dataset.kind == "dead_letter":
            for file in dataset.files:
                actual.dead_letters += _dead_letters(Path(file))
        elif dataset.kind == "sink":
            rows = actual.sinks.setdefault(dataset.node, [])
            for file in dataset.files:
                rows += read_rows(file, dataset.format)
    return actual


def read_rows(path: str, fmt: str) -> list[dict[str, Any]]:
    """Rows of an output file, decoded by the project's own readers (a JSON report as JSON)."""
    if fmt == "json":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data if isinstance(data, list) else [data]
    from connectors.files.registry import make_format
    from connectors.records import strip_positions

    rows: list[dict[str, Any]] = []
    for chunk in make_format(fmt).read(path, 65_536):
        rows += strip_positions(chunk.rows).to_pylist()
    return rows


def _dead_letters(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        payload = _payload(record)
        out.append({"step": record.get("step"), "rule": record.get("rule"), "payload": payload})
    return out


def _payload(record: dict[str, Any]) -> dict[str, Any]:
    """A dead letter's row as fields: its JSON payload, or its original CSV record read with
    the header and dialect the envelope keeps (values then are the file's text), else
    ``{payloadString: ...}``."""
    text = record.get("payloadString")
    attributes = {a["key"]: a["value"] for a in record.get("attributes") or []}
    if text and "csv.header" in attributes:
        dialect = json.loads(attributes.get("csv.dialect") or "{}")
        options = {
            "delimiter": dialect.get("delimiter", ","),
            "quotechar": dialect.get("quote_char", '"'),
        }
        header = next(csv.reader([attributes["csv.header"]], **options))
        values = next(csv.reader([text], **options), [])
        if len(values) == len(header):
            return dict(zip(header, values, strict=True))
    try:
        payload = json.loads(text) if text else {}
    except json.JSONDecodeError:
        payload = None
    return payload if isinstance(payload, dict) else {"payloadString": text}
