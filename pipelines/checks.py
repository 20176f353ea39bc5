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

Deep checks (``validate --deep``) build the Beam graph (and, when a source can be unbounded,
the streaming graph as Flink or Dataflow would run it), report any build error as a spec path
and the problem (never a traceback), then push an empty table with each input file's real
Arrow schema through the steps' own batch processors and the report aggregations: type errors
such as ``amount * 2`` on a CSV column of text, which only the data's types reveal, fail then
instead of at the first batch of a run.

Every problem is one line: spec path, what is wrong, and a hint (a "did you mean"), never an
internal ``_bw_*`` column name.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import BeamwrightError
from connectors.files.registry import head_schema
from pipelines import registry
from pipelines import spec as s
from pipelines.column_lineage import unknown_field
from pipelines.sources.file import MAX_FILES_READ

VALIDATE_RUN_ID = "validate"  # the run id a graph built only to be checked is built under

# --------------------------------------------------------------------------- static checks


def expression_problems(spec: s.PipelineSpec) -> list[str]:
    """One problem per expression that does not parse."""
    from transforms.expressions import ExpressionError, parse

    problems = []
    for path, text in s.expressions(spec):
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


def known_source_fields(spec: s.PipelineSpec) -> dict[str, list[str] | None]:
    """Field names of each source whose schema is known without reading its data, else None
    (each source kind says what it can know: see ``Kind.known_fields``)."""
    return {src.name: registry.kind_of(src).known_fields(src) for src in spec.sources}


def field_problems(spec: s.PipelineSpec, source_fields: dict[str, list[str] | None]) -> list[str]:
    """One problem per field named where the rows certainly do not have it."""
    from pipelines.column_lineage import walk

    known = [name for name, fields in source_fields.items() if fields is not None]
    fields = {name: fields or [] for name, fields in source_fields.items()}
    problems: list[str] = []
    for read in walk(spec, fields, known).reads:
        if read.missing:
            problem = unknown_field(read.path, read.field, read.available)
            if problem not in problems:
                problems.append(problem)
    return problems


def static_problems(spec: s.PipelineSpec) -> list[str]:
    """Everything plain ``validate`` checks beyond the spec's shape (no Beam imported),
    the ``tests:`` cases' names and mocks included.

    Field references are checked only once every expression parses: the walk reads the
    fields each expression names.
    """
    from pipelines.audience_checks import audience_problems
    from pipelines.remote_rules import remote_problems
    from pipelines.spec_tests import case_problems

    problems = expression_problems(spec) or remote_problems(spec)
    if problems:
        return problems + case_problems(spec)
    fields = field_problems(spec, known_source_fields(spec))
    return fields + (audience_problems(spec) if not fields else []) + case_problems(spec)


# --------------------------------------------------------------------------- deep checks


def deep_problems(spec: s.PipelineSpec) -> list[str]:
    """Build the Beam graph (and, for a spec whose sources can be unbounded, the streaming
    graph too), then try each step on an empty batch: ``validate --deep``."""
    from pipelines.build import discard_unrun
    from pipelines.loading import SpecError

    graphs = [("", False)]
    if s.unbounded_sources(spec):
        graphs.append(("streaming (sources unbounded): ", True))
    for prefix, streaming in graphs:
        try:
            built = build_graph(spec, streaming=streaming)
        except SpecError as exc:
            return [prefix + problem for problem in exc.problems]
        except Exception as exc:  # noqa: BLE001 - reported as path + problem, never a traceback
            return [prefix + build_problem(exc)]
        try:
            problems = [] if streaming else dry_run_problems(spec, built.pipeline, built.inputs)
        finally:
            discard_unrun(built.pipeline, spec, VALIDATE_RUN_ID)
        if problems:
            return problems
    return []


def build_graph(spec: s.PipelineSpec, *, streaming: bool) -> Any:
    """The spec's Beam graph on the local runner, not run; ``streaming`` builds it with every
    source that can be unbounded made unbounded (``bounded: null``) and Beam's ``streaming``
    option set, as Flink and Dataflow would run it. Raises what the builders raise."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.build import build_pipeline, discard_unrun

    if streaming:
        spec = unbounded_variant(spec)
    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(streaming=streaming))
    try:
        return build_pipeline(spec, pipeline, VALIDATE_RUN_ID)
    except BaseException:
        discard_unrun(pipeline, spec, VALIDATE_RUN_ID)
        raise


def unbounded_variant(spec: s.PipelineSpec) -> s.PipelineSpec:
    """``spec`` with each source that can be unbounded (Kafka) set to ``bounded: null``."""
    variant = spec.model_copy(deep=True)
    for source in variant.sources:
        if registry.kind_of(source).unbounded and hasattr(source, "bounded"):
            source.bounded = None
    return variant


def build_problem(exc: BaseException) -> str:
    """A spec path and the problem for an unexpected error raised while building the graph.

    Kind builders (``pipelines.sources``, ``steps``, ``sinks``) take the node's spec
    ``path``; the innermost builder on the traceback names the node that failed.
    """
    path = "pipeline"
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_KIND_PACKAGES) and isinstance(frame.f_locals.get("path"), str):
            path = frame.f_locals["path"]
        tb = tb.tb_next
    return f"{path}: cannot be built: {_message(exc)}"


_KIND_PACKAGES = ("pipelines.sources.", "pipelines.steps.", "pipelines.sinks.")


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def refuse_unknown_fields(spec: s.PipelineSpec, built: Any, *, streaming: bool) -> None:
    """``run`` and ``plan``: raise SpecError with the problems ``validate --deep`` finds on the
    graph just built, before anything is claimed, submitted or run; only what is certain to
    fail: the first file of each file source is read as the run reads its first batch
    (``run.batch_size`` rows), so a JSONL field first seen on a later line is no problem.

    Why: without it a filter naming a field the data lacks passed ``run``'s checks and failed
    at the first batch, after the run had started (lineage emitted, outputs locked). The cost
    is one batch of one file per file source; sources whose schema needs a data store (Kafka, PostgreSQL, HTTP) are not read,
    and a step whose setup needs one (``offline``) ends its branch unchecked, as today.
    """
    from pipelines.loading import SpecError

    if streaming:  # as validate --deep: the batch graph's processors are the ones tried
        return
    problems = dry_run_problems(spec, built.pipeline, built.inputs, offline=True)
    if problems:
        raise SpecError(problems)


def dry_run_problems(
    spec: s.PipelineSpec, pipeline: Any, inputs: list[Any], *, offline: bool = False
) -> list[str]:
    """Problems found by running each step's processor on zero rows with the real schema of
    each input file, as the run would see its first batch; then the report aggregations.

    ``pipeline`` is the built Beam pipeline (its ArrowSteps hold the processors) and
    ``inputs`` the built source datasets. Steps without a batch processor (window, batch)
    end the check of their branch; so, when ``offline``, does a step that asks a data store
    even for an empty batch (its processor's ``needs_store``), whose setup fails (it needs a
    store or a secret only a worker has) or that fails other than with a BeamwrightError (an
    unknown field, a type: a step needing a side input of its own, as dedupe, is no problem).
    """
    processors = _processors(pipeline)
    sources = {src.name: src for src in spec.sources}
    lookups = s.side_input_sources(spec)
    # offline (run, plan): only what is certain, the first file's first batch as the run
    # reads it (a JSONL line says nothing of the next; a batch is what the run's steps see)
    rows, most = (spec.run.batch_size, 1) if offline else (1, MAX_FILES_READ)
    empty = {
        d.node: _empty_tables(d, sources[d.node], rows, most) for d in inputs if d.node in sources
    }
    files: dict[str, list[str]] = {}  # problem -> the input files showing it
    for dataset in inputs:
        if dataset.node in lookups or dataset.node not in empty:
            continue
        for path, table in empty[dataset.node]:
            for problem in _run_chain(spec, dataset.node, table, processors, empty, offline):
                files.setdefault(problem, []).append(path)
    return [f"{problem} (with the columns of {_files(shown)})" for problem, shown in files.items()]


def _files(paths: list[str]) -> str:
    return paths[0] + (f" and {len(paths) - 1} other file(s)" if len(paths) > 1 else "")


def _empty_tables(dataset: Any, source: Any, rows: int, most: int) -> list[tuple[str, Any]]:
    """(file, an empty table with the schema of its first ``rows`` rows and the position
    columns) for each of the first ``most`` readable files."""
    from connectors.records import with_positions

    out = []
    for path in dataset.files[:most]:
        schema = head_schema(path, dataset.format, getattr(source, "options", None), rows)
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
    offline: bool = False,
) -> list[str]:
    """Follow the rows of ``source`` (an empty table of one file's schema) step by step."""
    current = source
    for i, step, reads in s.step_inputs(spec):
        if current not in reads:
            continue
        processor = processors.get(step.name)
        if processor is None or (offline and getattr(processor, "needs_store", False)):
            return []
        side = []
        for lookup in registry.kind_of(step).side_inputs(step):
            side = [table for _, table in empty.get(lookup, [])][:1]
            if not side:
                return []
        try:
            processor.setup()
        except Exception as exc:  # noqa: BLE001 - reported, with its path (unless offline)
            return [] if offline else [f"{_step_path(step, i, exc)}: {_message(exc)}"]
        try:
            table = processor.process(table, *side).rows
        except Exception as exc:  # noqa: BLE001 - every failure is reported, with its path
            if offline and not isinstance(exc, BeamwrightError):
                return []  # run/plan refuse only the project's own errors (a field, a type)
            return [f"{_step_path(step, i, exc)}: {_message(exc)}"]
        current = step.name
    return _sink_problems(spec, current, table)


def _step_path(step: Any, index: int, exc: Exception) -> str:
    """The most precise spec path for an error of ``step``: the expression that failed."""
    path = f"steps[{index}]"
    text = getattr(exc, "source", None)
    for sub, expression in registry.kind_of(step).expressions(step):
        if expression == text:
            return f"{path}.{sub}"
    return path


def _sink_problems(spec: s.PipelineSpec, last: str, table: Any) -> list[str]:
    """Sinks fed by ``last`` that work on the rows themselves (reports aggregate them) try
    its (empty) rows as the run would."""
    problems = []
    for i, sink, reads in s.sink_inputs(spec):
        if last in reads:
            problems += [f"sinks[{i}].{p}" for p in registry.kind_of(sink).dry_run(sink, table)]
    return problems
