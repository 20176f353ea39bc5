"""Run lifecycle: build, emit START, run, read counters, reconcile, check the error threshold,
emit COMPLETE or FAIL, return the summary.

A run fails (status FAILED, lineage FAIL, exit code 1 in the CLI) when the pipeline raises,
when the counts of any node do not reconcile, or when more than ``run.error_threshold`` of the
rows read were dead-lettered. Outputs written before the threshold check stay in place and the
dead letters tell why; the summary says the run failed.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from pipelines.spec import PipelineSpec
from pipelines.summary import RunSummary, counts_from_metrics

log = logging.getLogger(__name__)

DEFAULT_EVENT_LOG = "beamwright-output/lineage/events.jsonl"


class RunFailed(RuntimeError):
    """The run did not complete; ``summary`` holds what is known."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def new_run_id() -> str:
    """A UUIDv7 (time-ordered), as OpenLineage recommends for run ids."""
    from openlineage.client.uuid import generate_new_uuid

    return str(generate_new_uuid())


_USER_ERRORS = (
    r"CorruptFileError: (.+)",
    r"ExpressionError: (.+)",
    r"MaskError: (.+)",
    r"SecretError: (.+)",
    r"FileExistsError: (.+)",
    r"KeyError: ['\"](.+)['\"]",
    r"ValueError: (.+)",
)


def readable_error(exc: BaseException) -> str:
    """The user-facing cause of a failure: runners wrap a DoFn's exception in pages of
    context; find the innermost error of ours and show its message."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in reversed(chain):
        if type(err).__module__.split(".")[0] in ("connectors", "transforms", "pipelines"):
            return f"{type(err).__name__}: {err}"
    text = str(exc)
    for pattern in _USER_ERRORS:
        matches = re.findall(pattern, text)
        if matches:
            return pattern.split(":")[0] + ": " + matches[-1].split(" [while running")[0].strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _read_counters(result: Any) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.step import METRIC_NAMESPACE

    query = result.metrics().query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(
            value or 0
        )
    return counters


def job_name(spec: PipelineSpec) -> str:
    """A runner-safe job name (Dataflow wants lowercase letters, digits and dashes)."""
    return re.sub(r"[^a-z0-9-]", "-", spec.name.lower()).strip("-") or "beamwright"


def run_spec(
    spec: PipelineSpec,
    *,
    run_id: str | None = None,
    on_started: Callable[[str], None] | None = None,
    event_log: str | None = None,
    spec_path: str | None = None,
) -> RunSummary:
    """Run ``spec`` to completion and return its summary; raise RunFailed if it failed.

    Args:
        spec: the validated pipeline spec.
        run_id: defaults to a new UUIDv7.
        on_started: called with the run id once the pipeline is built and submitted.
        event_log: JSONL file for lineage events when no OpenLineage transport is configured.
        spec_path: the spec file, for the job's sourceCodeLocation facet.
    """
    import apache_beam as beam

    from pipelines.build import build_pipeline
    from pipelines.lineage_run import LineageSession, beam_lineage
    from pipelines.runners import pipeline_options
    from transforms.step import TALLY

    run_id = run_id or new_run_id()
    started = _dt.datetime.now(_dt.timezone.utc)
    options = pipeline_options(spec.run, job_name(spec))
    pipeline = beam.Pipeline(options=options)
    built = build_pipeline(spec, pipeline, run_id)  # SpecError here: nothing has started
    lineage = None
    if spec.lineage.enabled:
        lineage = LineageSession(
            spec,
            built.inputs,
            built.outputs,
            run_id,
            event_log=event_log or spec.lineage.event_log or DEFAULT_EVENT_LOG,
            spec_path=spec_path,
        )
    TALLY.reset()
    summary = RunSummary(
        run_id=run_id,
        pipeline=spec.name,
        template=spec.template,
        runner=spec.run.runner,
        status="RUNNING",
        started_at=started.isoformat(),
        elapsed_seconds=0.0,
        nodes=[],
        inputs=built.inputs,
        outputs=built.outputs,
        error_threshold=spec.run.error_threshold,
    )
    t0 = time.perf_counter()
    error: BaseException | None = None
    beam_seen: set[str] | None = None
    try:
        if on_started:
            on_started(run_id)
        result = pipeline.run()
        result.wait_until_finish()
        summary.elapsed_seconds = time.perf_counter() - t0
        summary.nodes = counts_from_metrics(_read_counters(result), built.node_order)
        beam_seen = beam_lineage(result)
        problem = _problem(summary)
    except KeyboardInterrupt as exc:
        summary.elapsed_seconds = time.perf_counter() - t0
        summary.status, summary.error = "ABORTED", "interrupted"
        if lineage:
            summary.lineage = lineage.finish("ABORT", summary, message="run interrupted", exc=exc)
        raise
    except Exception as exc:
        summary.elapsed_seconds = time.perf_counter() - t0
        problem, error = readable_error(exc), exc
        log.debug("pipeline failed", exc_info=True)
    summary.status = "FAILED" if problem else "COMPLETE"
    summary.error = problem
    if lineage:
        state = "FAIL" if problem else "COMPLETE"
        summary.lineage = lineage.finish(
            state, summary, message=problem, exc=error, beam_seen=beam_seen
        )
    if problem:
        raise RunFailed(problem, summary)
    return summary


def _problem(summary: RunSummary) -> str | None:
    broken = [n.name for n in summary.nodes if not n.reconciled]
    if broken:
        return f"row counts do not reconcile for {', '.join(broken)} (rows in != out + dead-lettered + filtered)"
    if summary.rejected_fraction > summary.error_threshold:
        dl = next((d.uri for d in summary.outputs if d.kind == "dead_letter"), "the dead letters")
        return (
            f"{summary.rejected_fraction:.2%} of rows were dead-lettered "
            f"({summary.rows_dead_lettered} of {summary.rows_read}), above the error threshold "
            f"of {summary.error_threshold:.2%}; see {dl}, fix the data or raise run.error_threshold"
        )
    return None


class ProgressPoller:
    """Calls ``callback(tally)`` every ``interval`` seconds while a run is in progress."""

    def __init__(self, callback: Callable[[dict[str, int]], None], interval: float = 0.25) -> None:
        self._callback = callback
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="beamwright-progress")

    def _loop(self) -> None:
        from transforms.step import TALLY

        while not self._stop.wait(self._interval):
            self._callback(TALLY.snapshot())

    def __enter__(self) -> ProgressPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
