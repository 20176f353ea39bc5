"""Run lifecycle: build (claiming every output), emit START, run, read counters, reconcile,
check the error threshold, publish the outputs, emit COMPLETE or FAIL, return the summary.

A run fails (status FAILED, lineage FAIL, exit code 1 in the CLI) when the pipeline raises,
when the counts of any node do not reconcile, or when more than ``run.error_threshold`` of the
rows read were dead-lettered. Sinks only stage during the run (:mod:`connectors.committer`);
they are published after those checks passed, so a failed run leaves every output exactly as
it was. Its dead letters are kept, since they say why: appended to the dead-letter directory
as usual, or, in ``overwrite`` mode, kept beside it in ``.beamwright-failed-<run>-<write>/``
(the summary names the place). Kafka sinks cannot be staged: they deliver as the run goes.

A spec with an unbounded source (Kafka with ``bounded: null``) is one streaming job instead
(:func:`stream_spec`): its sinks publish pane by pane as the job runs, and the driver follows
the job with lineage events (START when submitted, RUNNING heartbeats, then COMPLETE when it
was drained, ABORT when cancelled, FAIL when it failed).
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from connectors.errors import BeamwrightError, RunError, error_classes
from pipelines.ids import job_name, new_run_id
from pipelines.spec import (
    PipelineSpec,
    combining_steps,
    default_event_log,
    row_edges,
    streaming_sources,
)
from pipelines.summary import RunSummary, counts_from_metrics, counts_seen

log = logging.getLogger(__name__)

# only for a spec with no local output (pipelines.spec.default_event_log)
DEFAULT_EVENT_LOG = "beamwright-output/lineage/events.jsonl"


class RunFailed(RunError, RuntimeError):
    """The run did not complete; ``summary`` holds what is known."""

    def __init__(self, message: str, summary: RunSummary) -> None:
        super().__init__(message)
        self.summary = summary


def readable_error(exc: BaseException) -> str:
    """The user-facing cause of a failure: runners wrap a DoFn's exception in pages of
    context; show the innermost BeamwrightError in the exception chain or, when a runner
    handed it back as text (remote workers), the last one named in that text."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for err in reversed(chain):
        if isinstance(err, BeamwrightError):
            return f"{type(err).__name__}: {err}"
    text = str(exc)
    names = "|".join(sorted({cls.__name__ for cls in error_classes()}))
    ours = re.findall(rf"\b({names}): (.+)", text)
    anything = re.findall(r"\b(\w+(?:Error|Exception)): (.+)", text)
    for found in (ours, anything):
        if found:
            name, message = found[-1]
            return f"{name}: {message.split(' [while running')[0].strip()}"
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def read_counters(metrics: Any) -> dict[str, int]:
    """beamwright's counters from a runner's MetricResults (``result.metrics()``), summed
    over steps: committed values where the runner has them, else attempted."""
    from apache_beam.metrics.metric import MetricsFilter

    from connectors.metrics import METRIC_NAMESPACE

    query = metrics.query(MetricsFilter().with_namespace(METRIC_NAMESPACE))
    counters: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + int(
            value or 0
        )
    return counters


def _new_summary(spec: PipelineSpec, run_id: str, built: Any) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        pipeline=spec.name,
        template=spec.template,
        runner=spec.run.runner,
        status="RUNNING",
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        elapsed_seconds=0.0,
        nodes=[],
        inputs=built.inputs,
        outputs=built.outputs,
        error_threshold=spec.run.error_threshold,
        edges=row_edges(spec),
        combining=combining_steps(spec),
    )


def _build(spec: PipelineSpec, run_id: str) -> Any:
    """A new Beam pipeline for ``spec`` with every output claimed (locked, recovered from
    earlier crashes, ownership checked); SpecError here means nothing has started."""
    import apache_beam as beam

    from connectors.committer import OutputConflict
    from pipelines.build import build_pipeline, discard_unrun
    from pipelines.checks import refuse_unknown_fields
    from pipelines.extras import extra_problems
    from pipelines.loading import SpecError
    from pipelines.remote_rules import remote_problems
    from pipelines.runners import pipeline_options

    problems = extra_problems(spec) or remote_problems(spec)
    if problems:  # before anything is claimed or submitted
        raise SpecError(problems)
    if spec.run.runner == "direct":  # its workers are this machine: fail fast, one line
        from pipelines.steps.postgres import check_reachable

        check_reachable(spec)
    streaming = bool(streaming_sources(spec))
    pipeline = beam.Pipeline(
        options=pipeline_options(spec.run, job_name(spec.name), streaming=streaming)
    )
    try:
        built = build_pipeline(spec, pipeline, run_id)
        refuse_unknown_fields(spec, built, streaming=streaming)  # as validate --deep
        claimed = []
        try:
            for staged in built.committers:
                staged.committer.claim()
                claimed.append(staged)
        except OutputConflict as exc:
            for staged in claimed:
                staged.committer.release()
            raise SpecError([str(exc)]) from None
    except BaseException:
        discard_unrun(pipeline, spec, run_id)
        raise
    return built


def _publish(built: Any, summary: RunSummary) -> None:
    """Publish every staged output (the run's checks passed); outputs learn their files.
    The time it takes counts as run time."""
    t0 = time.perf_counter()
    for staged in built.committers:
        done = staged.committer.published_by_this_run()  # run.publish: pipeline
        if done is None:
            staged.dataset.files = staged.committer.publish()
        else:
            staged.dataset.files = done
            staged.committer.release()
    summary.published = True
    summary.elapsed_seconds += time.perf_counter() - t0


def _abort(built: Any, summary: RunSummary) -> None:
    """A failed run: drop what it staged, except the dead letters, which say why it failed."""
    from connectors.committer import OutputConflict

    for staged in built.committers:
        try:
            if staged.dead_letters and staged.committer.target.mode == "append":
                done = staged.committer.published_by_this_run()  # by the pipeline
                staged.dataset.files = staged.committer.publish() if done is None else done
                staged.committer.release()
                summary.failed_dead_letters = staged.committer.target.directory
            elif staged.dead_letters:
                summary.failed_dead_letters = staged.committer.abort(keep=True)
            else:
                staged.committer.abort()
        except (OSError, OutputConflict) as exc:  # keep aborting the others
            log.warning("could not clean up %s: %s", staged.dataset.uri, exc)


def _execute(built: Any, summary: RunSummary) -> Any:
    """Run a built pipeline to the end and fill the summary's counts; returns the result."""
    from connectors.metrics import TALLY

    TALLY.reset()
    t0 = time.perf_counter()
    try:
        result = built.pipeline.run()
        result.wait_until_finish()
    except BaseException:
        # No metrics come back from a pipeline that raised: say what was seen so far.
        summary.nodes = counts_seen(TALLY.snapshot(), built.node_order)
        summary.partial_counts = True
        raise
    finally:
        summary.elapsed_seconds += time.perf_counter() - t0
    metrics = result.metrics()
    summary.nodes = counts_from_metrics(read_counters(metrics), built.node_order)
    add_call_rates(summary.nodes, metrics)
    return result


def add_call_rates(nodes: list[Any], metrics: Any) -> None:
    """The effective call rate of every step that makes calls (``http``, a rate-limited
    ``batch``), in its ``stats``: calls per second over the time calls ran, all workers
    together, which is what ``strategy.rate_limit`` bounds (so the summary shows what a limit
    let through, not only what was asked)."""
    from transforms.call_strategies import rates_from_metrics

    for node in nodes:
        if node.stats.get("calls"):
            rates = rates_from_metrics(metrics, node.name)
            node.stats["effective_rate_per_s"] = round(rates["job_rate"])


def _commit_kafka(built: Any, result: Any) -> None:
    """Commit the offsets a successful run consumed (local runs commit after the run)."""
    if not built.kafka_commits:
        return
    from connectors.kafka import commit_offsets, consumed_offsets
    from pipelines.build import client_config

    for name, servers, group, config in built.kafka_commits:
        offsets = consumed_offsets(result, name)
        if offsets:
            commit_offsets(servers, group, offsets, consumer_config=client_config(config, name))


def run_spec(
    spec: PipelineSpec,
    *,
    run_id: str | None = None,
    event_log: str | None = None,
    spec_path: str | None = None,
) -> RunSummary:
    """Run ``spec`` to completion and return its summary; raise RunFailed if it failed.

    Args:
        spec: the validated pipeline spec.
        run_id: defaults to a new UUIDv7.
        event_log: JSONL file for lineage events when no OpenLineage transport is configured.
        spec_path: the spec file, for the job's sourceCodeLocation facet.
    """
    if spec.run.runner_options.get("dry_run"):
        return dry_run_spec(spec, run_id=run_id)
    if streaming_sources(spec):
        return stream_spec(spec, run_id=run_id, event_log=event_log, spec_path=spec_path)
    run_id = run_id or new_run_id()
    built, lineage = _start(spec, run_id, event_log, spec_path)
    summary = _new_summary(spec, run_id, built)
    error: BaseException | None = None
    beam_seen: set[str] | None = None
    try:
        problem, beam_seen = _run_cycle(built, summary)
    except KeyboardInterrupt as exc:
        summary.status, summary.error = "ABORTED", "interrupted"
        _abort(built, summary)
        if lineage:
            summary.lineage = lineage.finish("ABORT", summary, message="run interrupted", exc=exc)
        raise
    except Exception as exc:
        problem, error = readable_error(exc), exc
        log.debug("pipeline failed", exc_info=True)
    if problem:
        _abort(built, summary)
    return _conclude(summary, lineage, problem, error, beam_seen)


def dry_run_spec(
    spec: PipelineSpec, *, run_id: str | None = None, graph_path: str | None = None
) -> RunSummary:
    """``dry_run`` (``run --dry-run``, or Beam's ``dry_run`` option): translate for the
    spec's runner as :func:`pipelines.plan.translate` does, write the job graph to
    ``graph_path`` (default ``beamwright-output/<job>/job-graph-<runner>.json``) and return a
    summary whose status is TRANSLATED. Nothing runs, so no output is claimed and no lineage
    event is emitted; the remote-runner rules are checked as for a real submission."""
    import json
    from pathlib import Path

    from pipelines.loading import SpecError
    from pipelines.plan import summary as plan_line
    from pipelines.plan import translate
    from pipelines.remote_rules import remote_problems
    from pipelines.runners import RunnerConfigError

    if spec.run.runner == "direct":
        raise RunnerConfigError(
            "dry_run: the direct runner has nothing to translate",
            where="run.runner",
            hint="a dry run translates for another runner: --runner dataflow|portable|flink",
        )
    problems = remote_problems(spec)
    if problems:
        raise SpecError(problems)
    started = time.perf_counter()
    plan = translate(spec, spec.run.runner)
    path = Path(
        graph_path or f"beamwright-output/{job_name(spec.name)}/job-graph-{spec.run.runner}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=2) + "\n", encoding="utf-8")
    return RunSummary(
        run_id=run_id or new_run_id(),
        pipeline=spec.name,
        template=spec.template,
        runner=spec.run.runner,
        status="TRANSLATED",
        started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        elapsed_seconds=time.perf_counter() - started,
        nodes=[],
        inputs=[],
        outputs=[],
        error_threshold=spec.run.error_threshold,
        job_graph=str(path),
        translation=plan_line(plan),
    )


def _run_cycle(built: Any, summary: RunSummary) -> tuple[str | None, set[str]]:
    """Execute, check, and on success publish the outputs and then commit Kafka offsets and
    other sources' positions such as an http source's marks (in that order: positions are
    committed only for rows whose output is published)."""
    from pipelines.lineage_run import beam_lineage

    result = _execute(built, summary)
    beam_seen = beam_lineage(result)
    problem = _problem(summary)
    for check in built.before_publish:  # e.g. table-level expectations on the whole input
        found = check(summary)  # every check runs: each reports its verdicts
        problem = problem or found
    if not problem:
        _publish(built, summary)
        _commit_kafka(built, result)
        for commit in built.after_publish:
            commit(result)
    return problem, beam_seen


def _start(
    spec: PipelineSpec, run_id: str, event_log: str | None, spec_path: str | None
) -> tuple[Any, Any]:
    """Build (claiming every output) and open the run's lineage (emits START); if lineage
    cannot start, the claims are given back before the error goes on."""
    from pipelines.build import discard_unrun

    built = _build(spec, run_id)
    try:
        return built, _lineage_session(spec, built, run_id, event_log, spec_path)
    except BaseException:
        _abort(built, _new_summary(spec, run_id, built))
        discard_unrun(built.pipeline, spec, run_id)
        raise


def _lineage_session(
    spec: PipelineSpec, built: Any, run_id: str, event_log: str | None, spec_path: str | None
) -> Any:
    if not spec.lineage.enabled:
        return None
    from pipelines.lineage_run import LineageSession

    return LineageSession(
        spec,
        built.inputs,
        built.outputs,
        run_id,
        event_log=event_log
        or spec.lineage.event_log
        or default_event_log(spec)
        or DEFAULT_EVENT_LOG,
        spec_path=spec_path,
        key_uses=built.key_uses,
    )


def _conclude(
    summary: RunSummary,
    lineage: Any,
    problem: str | None,
    error: BaseException | None,
    beam_seen: set[str] | None,
) -> RunSummary:
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


def follow_spec(
    spec: PipelineSpec,
    *,
    interval_s: float = 5.0,
    max_cycles: int | None = None,
    stop: threading.Event | None = None,
    on_cycle: Callable[[int, RunSummary], None] | None = None,
    event_log: str | None = None,
    spec_path: str | None = None,
) -> RunSummary:
    """Continuous local operation: repeated bounded cycles under one run id.

    Each cycle builds the pipeline afresh (so Kafka reads start at the committed offsets and
    stop at the current end), runs it, commits the offsets it consumed, and emits a lineage
    RUNNING event with the counts so far; then it waits ``interval_s`` for new data. Setting
    ``stop`` (the CLI does on Ctrl-C) ends the loop after the current cycle, cleanly, with a
    COMPLETE event. Truly unbounded execution is for Flink and Dataflow (``bounded: null``).
    """
    run_id = new_run_id()
    stop = stop or threading.Event()
    built, lineage = _start(spec, run_id, event_log, spec_path)
    total = _new_summary(spec, run_id, built)
    cycle = 0
    problem: str | None = None
    error: BaseException | None = None
    while True:  # the first cycle always runs: its outputs are already claimed
        cycle += 1
        summary = _new_summary(spec, run_id, built)
        try:
            problem, _ = _run_cycle(built, summary)
        except KeyboardInterrupt:
            _abort(built, summary)
            raise
        except Exception as exc:
            problem, error = readable_error(exc), exc
        if problem:
            _abort(built, summary)
            total.nodes = _add_counts(total.nodes, summary.nodes)
            total.failed_dead_letters = summary.failed_dead_letters
            break
        total.elapsed_seconds += summary.elapsed_seconds
        total.nodes = _add_counts(total.nodes, summary.nodes)
        total.published = True
        if lineage:
            lineage.running(total.nodes)
        if on_cycle:
            on_cycle(cycle, summary)
        if (max_cycles is not None and cycle >= max_cycles) or stop.wait(interval_s):
            break
        built = _build(spec, run_id)
    return _conclude(total, lineage, problem, error, None)


def stream_spec(
    spec: PipelineSpec,
    *,
    run_id: str | None = None,
    stop: threading.Event | None = None,
    event_log: str | None = None,
    spec_path: str | None = None,
) -> RunSummary:
    """Submit an unbounded spec as one streaming job and follow it until it ends.

    Lineage: START when the job is submitted, a RUNNING heartbeat every
    ``lineage.heartbeat_seconds`` (60 s by default, as in OpenLineage's Flink integration) with
    input and output statistics polled from the running job's metrics, then COMPLETE when the
    job ended on its own (drained: its input is finished), ABORT when it was cancelled (``stop``
    set, or Ctrl-C, cancels it), FAIL when it failed. Sinks publish pane by pane as the job runs
    (:mod:`connectors.panes`), so nothing is published at the end and nothing is rolled back:
    the error threshold and the end-of-run reconciliation of bounded runs do not apply; the
    counts are reported as they are.
    """
    from pipelines.loading import SpecError
    from pipelines.runners import runs_streaming

    if not runs_streaming(spec.run):
        sources = ", ".join(streaming_sources(spec))
        raise SpecError(
            [
                f"sources: {sources} unbounded (bounded: null), and the local runner cannot "
                "run an unbounded pipeline (it runs stage by stage: an endless read never "
                "reaches the sinks); locally use bounded: end_offsets with run --follow, or "
                "run it on flink, dataflow or portable (beamwright plan shows the graph)"
            ]
        )
    run_id = run_id or new_run_id()
    stop = stop or threading.Event()
    built, lineage = _start(spec, run_id, event_log, spec_path)
    summary = _new_summary(spec, run_id, built)
    job = _StreamingJob(built, summary)
    try:
        state = job.follow(
            stop, spec.lineage.heartbeat_seconds, lineage.running if lineage else None
        )
    except KeyboardInterrupt:
        job.cancel()
        state = "ABORT"
    finally:
        for staged in built.committers:
            staged.committer.release()
    problem = job.error and readable_error(job.error)
    summary.published = True  # pane by pane, as the job ran
    summary.status = {"COMPLETE": "COMPLETE", "ABORT": "ABORTED"}.get(state, "FAILED")
    summary.error = problem or ("cancelled" if state == "ABORT" else None)
    if lineage:
        summary.lineage = lineage.finish(state, summary, message=summary.error, exc=job.error)
    if state == "FAIL":
        raise RunFailed(problem or "the streaming job failed", summary)
    return summary


class _StreamingJob:
    """A submitted streaming job, waited for on a thread of its own so the driver can send
    heartbeats and cancel it. Only ``wait_until_finish`` is asked of the runner's result: it
    is the one call every runner (Dataflow, Flink, portable, the direct runners) implements."""

    def __init__(self, built: Any, summary: RunSummary) -> None:
        from connectors.metrics import TALLY

        TALLY.reset()
        self._built = built
        self._summary = summary
        self._started = time.perf_counter()
        self.error: BaseException | None = None
        self._ended = threading.Event()
        self._cancelled = False
        self._result = built.pipeline.run()  # returns once submitted on streaming runners
        threading.Thread(target=self._wait, daemon=True, name="beamwright-job").start()

    def _wait(self) -> None:
        try:
            self._result.wait_until_finish()
        except BaseException as exc:  # noqa: BLE001 - the driver reports it
            self.error = exc
        finally:
            self._ended.set()

    def follow(
        self,
        stop: threading.Event,
        heartbeat_s: float,
        on_heartbeat: Callable[[list[Any]], None] | None,
    ) -> str:
        """Heartbeats until the job ends or ``stop`` is set; returns the lineage end state."""
        next_beat = time.monotonic() + heartbeat_s
        while not self._ended.is_set():
            if stop.is_set():
                self.cancel()
                break
            if self._ended.wait(0.1):
                break
            if time.monotonic() >= next_beat:
                next_beat += heartbeat_s
                self._count()
                if on_heartbeat:
                    on_heartbeat(self._summary.nodes)
        self._count()
        if self._cancelled:
            return "ABORT"
        return "FAIL" if self.error is not None else "COMPLETE"

    def cancel(self) -> None:
        self._cancelled = True
        try:
            self._result.cancel()
        except Exception:  # noqa: BLE001 - a job that already ended cannot be cancelled
            log.debug("cancel failed", exc_info=True)
        self._ended.wait(10)

    def _count(self) -> None:
        """The job's counts so far, from the runner's metrics (committed where it has them)."""
        try:
            counters = read_counters(self._result.metrics())
        except Exception:  # noqa: BLE001 - a runner without live metrics: what was seen
            from connectors.metrics import TALLY

            self._summary.nodes = counts_seen(TALLY.snapshot(), self._built.node_order)
            self._summary.partial_counts = True
        else:
            self._summary.nodes = counts_from_metrics(counters, self._built.node_order)
            add_call_rates(self._summary.nodes, self._result.metrics())
        self._summary.elapsed_seconds = time.perf_counter() - self._started


def _add_counts(total: list[Any], cycle: list[Any]) -> list[Any]:
    if not total:
        return cycle
    for into, add in zip(total, cycle, strict=True):
        into.add(add)
    return total


def _problem(summary: RunSummary) -> str | None:
    broken = summary.unreconciled()
    if broken:
        return f"row counts do not reconcile: {'; '.join(broken)}"
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
        from connectors.metrics import TALLY

        while not self._stop.wait(self._interval):
            self._callback(TALLY.snapshot())

    def __enter__(self) -> ProgressPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
