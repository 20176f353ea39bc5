"""Checks of a spec beyond its shape: what ``beamwright validate`` finds before anything runs.

Static checks (plain ``validate``; no Beam, no data read beyond file headers):

* every expression (validate ``expression`` rules, map ``derive``, filter ``where``) parses;
  injection attempts (``__import__('os')``, attribute access, lambdas) are syntax errors of
  the expression language, since nothing is ever evaluated as Python;
* every field a node names exists, wherever the schema is *known*. The walk is
  :func:`lineage.columns.walk`, the one that derives column lineage, so the two cannot
  disagree about which fields a step reads or produces. A schema is known after a source whose
  fields are readable cheaply from its files' headers (local CSV, Parquet and Avro files; a
  JSONL line says nothing about the next one, and a Kafka topic is not read), a validate step
  that declares its fields and drops or rejects the others, a map ``select`` or a window.
  Where it is unknown nothing is guessed and nothing fails.

Deep checks (``validate --deep``) build the Beam graph, report any build error as a spec path
and the problem (never a traceback), then push an empty table with each input file's real
Arrow schema through the steps' own batch processors and the report aggregations: type errors
such as ``amount * 2`` on a CSV column of text, which only the data's types reveal, fail then
instead of at the first batch of a run.

Every problem is one line: spec path, what is wrong, and a hint (a "did you mean"), never an
internal ``_bw_*`` column name.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
from collections.abc import Iterator
from typing import Any

from pipelines import spec as s

HEADER_FORMATS = ("csv", "parquet", "avro")
"""Formats whose field names the first rows of each file fix for the whole file."""

MAX_FILES_READ = 100
"""A glob matching more files than this is left unknown rather than opening them all."""

_HIDDEN_PREFIX = "_bw_"


# --------------------------------------------------------------------------- static checks


def expressions(spec: s.PipelineSpec) -> Iterator[tuple[str, str]]:
    """(spec path, text) of every expression in ``spec``."""
    for i, step in enumerate(spec.steps):
        if isinstance(step, s.ValidateStepSpec):
            for j, rule in enumerate(step.rules):
                if isinstance(rule, s.ExpressionRule):
                    yield f"steps[{i}].rules[{j}].expr", rule.expr
        elif isinstance(step, s.MapStepSpec):
            for name, text in step.derive.items():
                yield f"steps[{i}].derive.{name}", text
        elif isinstance(step, s.FilterStepSpec):
            yield f"steps[{i}].where", step.where


def expression_problems(spec: s.PipelineSpec) -> list[str]:
    """One problem per expression that does not parse."""
    from transforms.expressions import ExpressionError, parse

    problems = []
    for path, text in expressions(spec):
        try:
            parse(text)
        except ExpressionError as exc:
            problems.append(f"{path}: {_shorten(exc, text)}")
    return problems


def _shorten(exc: Exception, text: str, limit: int = 200) -> str:
    """The error, with a huge expression's text cut down so the message stays readable."""
    message = str(exc)
    if len(text) > limit:
        message = message.replace(repr(text), repr(text[:limit]) + "…")
    return message


def head_schema(path: str, fmt: str, options: dict[str, Any] | None = None) -> Any:
    """The Arrow schema of a file's first rows (position columns dropped), or None when it
    cannot be read (empty, corrupt, unreadable: building the source reports those)."""
    from connectors.files.registry import make_format
    from connectors.records import strip_positions

    try:
        chunks = make_format(fmt, **(options or {})).read(path, 1)
        with contextlib.closing(chunks):
            for chunk in chunks:
                return strip_positions(chunk.rows).schema
    except Exception:  # noqa: BLE001 - any failure only means "schema unknown" here
        return None
    return None


def known_source_fields(spec: s.PipelineSpec) -> dict[str, list[str] | None]:
    """Field names of each source whose schema is known without reading its data, else None.

    Only local files are opened; a glob's files must agree, so the known fields are those
    every file has.
    """
    from connectors.files.base import is_remote
    from connectors.files.registry import infer_format

    out: dict[str, list[str] | None] = {}
    for source in spec.sources:
        out[source.name] = None
        if not isinstance(source, s.FileSourceSpec) or is_remote(source.path):
            continue
        files = sorted(itertools.islice(glob.iglob(source.path), MAX_FILES_READ + 1))
        if not files or len(files) > MAX_FILES_READ:
            continue
        try:
            fmt = source.format or infer_format(files[0])
        except ValueError:
            continue
        if fmt not in HEADER_FORMATS:
            continue
        names: list[str] | None = None
        for path in files:
            schema = head_schema(path, fmt, source.options)
            if schema is None:
                names = None
                break
            names = [n for n in schema.names if names is None or n in names]
        out[source.name] = names
    return out


def field_problems(
    spec: s.PipelineSpec, source_fields: dict[str, list[str] | None]
) -> list[str]:
    """One problem per field named where the rows certainly do not have it."""
    from lineage.columns import walk

    known = [name for name, fields in source_fields.items() if fields is not None]
    fields = {name: fields or [] for name, fields in source_fields.items()}
    problems: list[str] = []
    for read in walk(spec, fields, known).reads:
        if read.missing:
            problem = unknown_field(read.path, read.field, read.available)
            if problem not in problems:
                problems.append(problem)
    return problems


def unknown_field(path: str, name: str, available: frozenset[str] | list[str]) -> str:
    """``path: unknown field 'x'; did you mean 'y'?`` (internal columns never suggested)."""
    visible = sorted(f for f in available if not f.startswith(_HIDDEN_PREFIX))
    top = name.split(".")[0]
    if top.startswith(_HIDDEN_PREFIX):
        return f"{path}: '{name}' is an internal column, not a field of the data"
    guess = s.closest(top, visible)
    if guess:
        hint = f"did you mean '{guess}'?"
    elif visible:
        hint = "fields here: " + ", ".join(visible[:20]) + (", ..." if len(visible) > 20 else "")
    else:
        hint = "the rows have no fields here"
    return f"{path}: unknown field '{name}'; {hint}"


def static_problems(spec: s.PipelineSpec) -> list[str]:
    """Everything plain ``validate`` checks beyond the spec's shape (no Beam imported).

    Field references are checked only once every expression parses: the walk reads the
    fields each expression names.
    """
    problems = expression_problems(spec)
    if problems:
        return problems
    return field_problems(spec, known_source_fields(spec))


# --------------------------------------------------------------------------- deep checks


def build_problem(exc: BaseException) -> str:
    """A spec path and the problem for an unexpected error raised while building the graph.

    Builders in :mod:`pipelines.nodes` take the node's spec ``path``; the innermost builder on
    the traceback names the node that failed.
    """
    path = "pipeline"
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__") == "pipelines.nodes" and isinstance(
            frame.f_locals.get("path"), str
        ):
            path = frame.f_locals["path"]
        tb = tb.tb_next
    return f"{path}: cannot be built: {_message(exc)}"


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def dry_run_problems(spec: s.PipelineSpec, pipeline: Any, inputs: list[Any]) -> list[str]:
    """Problems found by running each step's processor on zero rows with the real schema of
    each input file, as the run would see its first batch; then the report aggregations.

    ``pipeline`` is the built Beam pipeline (its ArrowSteps hold the processors) and
    ``inputs`` the built source datasets. Steps without a batch processor (window, batch)
    end the check of their branch.
    """
    processors = _processors(pipeline)
    sources = {src.name: src for src in spec.sources}
    lookups = {st.lookup for st in spec.steps if isinstance(st, s.LookupStepSpec)}
    empty = {d.node: _empty_tables(d, sources[d.node]) for d in inputs if d.node in sources}
    first = _first_inputs(spec, lookups)
    files: dict[str, list[str]] = {}  # problem -> the input files showing it
    for dataset in inputs:
        if dataset.node in lookups or dataset.node not in empty:
            continue
        for path, table in empty[dataset.node]:
            for problem in _run_chain(spec, dataset.node, table, processors, empty, first):
                files.setdefault(problem, []).append(path)
    return [f"{problem} (with the columns of {_files(shown)})" for problem, shown in files.items()]


def _files(paths: list[str]) -> str:
    return paths[0] + (f" and {len(paths) - 1} other file(s)" if len(paths) > 1 else "")


def _first_inputs(spec: s.PipelineSpec, lookups: set[str]) -> list[str]:
    explicit = {
        n
        for st in spec.steps
        if st.input
        for n in ([st.input] if isinstance(st.input, str) else st.input)
    }
    main = [src.name for src in spec.sources if src.name not in lookups | explicit]
    return main or [spec.sources[0].name]


def _empty_tables(dataset: Any, source: Any) -> list[tuple[str, Any]]:
    """(file, an empty table with its schema and position columns) for each readable file."""
    from connectors.records import with_positions

    out = []
    for path in dataset.files[:MAX_FILES_READ]:
        schema = head_schema(path, dataset.format, getattr(source, "options", None))
        if schema is not None:
            out.append((path, with_positions(schema.empty_table(), path, [])))
    return out


def _processors(pipeline: Any) -> dict[str, Any]:
    """Step name -> batch processor, for every ArrowStep in the built graph."""
    from apache_beam.pipeline import PipelineVisitor

    from transforms.step import ArrowStep

    found: dict[str, Any] = {}

    class Collect(PipelineVisitor):
        def enter_composite_transform(self, node: Any) -> None:
            self.visit_transform(node)

        def visit_transform(self, node: Any) -> None:
            if isinstance(node.transform, ArrowStep):
                found[node.transform.step_name] = node.transform.processor

    pipeline.visit(Collect())
    return found


def _run_chain(
    spec: s.PipelineSpec,
    source: str,
    table: Any,
    processors: dict[str, Any],
    empty: dict[str, list[tuple[str, Any]]],
    first: list[str],
) -> list[str]:
    """Follow the rows of ``source`` (an empty table of one file's schema) step by step."""
    current = source
    for i, step in enumerate(spec.steps):
        default = [spec.steps[i - 1].name] if i else first
        reads = [step.input] if isinstance(step.input, str) else (step.input or default)
        if current not in reads:
            continue
        processor = processors.get(step.name)
        if processor is None:
            return []
        side = []
        if isinstance(step, s.LookupStepSpec):
            side = [table for _, table in empty.get(step.lookup, [])][:1]
            if not side:
                return []
        try:
            processor.setup()
            table = processor.process(table, *side).rows
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with its path
            return [f"{_step_path(step, i, exc)}: {_message(exc)}"]
        current = step.name
    return _report_problems(spec, current, table, first)


def _step_path(step: Any, index: int, exc: Exception) -> str:
    """The most precise spec path for an error of ``step``: the expression that failed."""
    path = f"steps[{index}]"
    text = getattr(exc, "source", None)
    if isinstance(step, s.MapStepSpec):
        return next((f"{path}.derive.{n}" for n, t in step.derive.items() if t == text), path)
    if isinstance(step, s.FilterStepSpec) and text == step.where:
        return f"{path}.where"
    if isinstance(step, s.ValidateStepSpec):
        for j, rule in enumerate(step.rules):
            if isinstance(rule, s.ExpressionRule) and rule.expr == text:
                return f"{path}.rules[{j}].expr"
    return path


def _report_problems(
    spec: s.PipelineSpec, last: str, table: Any, first: list[str]
) -> list[str]:
    """Report sinks fed by ``last`` aggregate its (empty) rows as the run would."""
    from transforms.aggregate import GroupAggregate, ReportFieldError

    default = [spec.steps[-1].name] if spec.steps else first
    problems = []
    for i, sink in enumerate(spec.sinks):
        reads = [sink.input] if sink.input else default
        if not isinstance(sink, s.ReportSinkSpec) or last not in reads:
            continue
        try:
            GroupAggregate(sink.group_by, sink.metrics).partial(table)
        except ReportFieldError as exc:
            problems.append(unknown_field(f"sinks[{i}].{exc.where}", exc.field, exc.available))
        except Exception as exc:  # noqa: BLE001 - e.g. sum() of a text column
            problems.append(f"sinks[{i}].metrics: {_message(exc)}")
    return problems
