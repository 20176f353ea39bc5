"""Detached jobs: ``run --detach`` submits and returns; ``beamwright jobs status|metrics|cancel
JOB`` follow up later, from any process, through Beam's Job API.

**What can detach.** A job whose outputs need no driver, on a runner that keeps it after
the driver leaves (portable: a Beam job service, Flink's job server; flink): a streaming job
(its sinks publish pane by pane on the workers, :mod:`connectors.panes`), or a bounded job with
``run.publish: pipeline`` (its last step checks the error threshold and publishes,
:mod:`connectors.pipeline_publish`). Other bounded jobs are published by the driver only
after the run's checks, which is what keeps a failed run from changing any output; a
detached driver would leave them staged, so ``--detach`` refuses them and says so. Dataflow jobs are followed with ``gcloud dataflow jobs``: its API is
not reachable from this machine, so no code here pretends to have been tested against it.

**Claims.** A run's claim on its outputs is a lock held by the driver process, which exits on
detach. The claim is handed to the job as a *lease* file in each output directory
(:meth:`connectors.committer.OutputCommitter.lease`): any other run claiming those outputs
fails, naming the job and these commands, so none removes the job's staging or publishes
over its panes. ``jobs status`` or ``jobs cancel`` ends the leases once the job has ended.

**Lineage.** START is emitted on submit; the terminal event (COMPLETE when the job was
drained or finished, ABORT when cancelled, FAIL when it failed) is emitted once, by the first
``jobs status``/``jobs cancel`` that sees the job ended, with the counts from its metrics.

**Records.** What the follow-up commands need is kept in ``$BEAMWRIGHT_HOME/jobs/<job>.json``
(``~/.beamwright`` by default; mode 0600): the job id, its endpoint, the run id, the spec
(secret *references* only, never values), the datasets and the lease paths.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from connectors.errors import BeamwrightError
from pipelines.spec import PipelineSpec, streaming_sources

TERMINAL = {"DONE": "COMPLETE", "DRAINED": "COMPLETE", "CANCELLED": "ABORT", "FAILED": "FAIL"}
JOB_API_RUNNERS = ("portable", "flink")


class JobError(BeamwrightError, ValueError):
    """A job cannot be detached, found or reached."""


def jobs_dir() -> Path:
    return Path(os.environ.get("BEAMWRIGHT_HOME") or Path.home() / ".beamwright") / "jobs"


@dataclasses.dataclass
class JobRecord:
    job_id: str
    run_id: str
    pipeline: str
    runner: str
    endpoint: str
    submitted_at: str
    spec: dict[str, Any]
    node_order: list[list[str]]
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    leases: list[str]
    event_log: str | None = None
    spec_path: str | None = None
    ended: str | None = None  # the lineage end state, once emitted
    principal: dict[str, str] | None = None  # who submitted it (the terminal event's principal)
    key_uses: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # pseudonym keys

    @property
    def path(self) -> Path:
        return jobs_dir() / f"{_safe(self.job_id)}.json"

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dataclasses.asdict(self), out, indent=2)
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, job_id: str) -> JobRecord:
        path = jobs_dir() / f"{_safe(job_id)}.json"
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise JobError(
                f"no detached job '{job_id}' is recorded in {jobs_dir()}",
                hint="jobs are recorded by run --detach on this machine (BEAMWRIGHT_HOME)",
            ) from None


def _safe(job_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in job_id)


def detach_spec(
    spec: PipelineSpec, *, event_log: str | None = None, spec_path: str | None = None
) -> JobRecord:
    """Submit ``spec`` as a streaming job, emit START, hand its claims to the job, record it
    and return without waiting (see the module docstring for what can detach)."""
    from pipelines.run import _abort, _new_summary, _start
    from pipelines.runners import runs_streaming

    if spec.run.runner not in JOB_API_RUNNERS:
        raise JobError(
            f"--detach: the {spec.run.runner} runner has no job to leave running",
            where="run.runner",
            hint="detach on portable or flink (Beam's Job API); Dataflow jobs are followed "
            "with gcloud dataflow jobs",
        )
    bounded = not streaming_sources(spec) or not runs_streaming(spec.run)
    if bounded and spec.run.publish != "pipeline":
        raise JobError(
            "--detach: a bounded job's outputs are published by the driver after the run's "
            "checks (counts, error threshold), so it must wait for the job",
            where="run.publish",
            hint="set run.publish: pipeline (the job then publishes its own outputs after the "
            "error-threshold check), or run it without --detach",
        )
    from pipelines.run import new_run_id

    run_id = new_run_id()
    built, lineage = _start(spec, run_id, event_log, spec_path)
    try:
        result = built.pipeline.run()
        job_id = str(getattr(result, "_job_id", "") or result.job_id())
    except BaseException:
        _abort(built, _new_summary(spec, run_id, built))
        raise
    hint = f"beamwright jobs status {job_id} (ends the lease once the job ended); " \
        f"beamwright jobs cancel {job_id} stops it"  # fmt: skip
    leases = []
    for staged in built.committers:
        staged.committer.lease(job_id, hint)
        leases.append(staged.committer.target.lease_path)
    record = JobRecord(
        job_id=job_id,
        run_id=run_id,
        pipeline=spec.name,
        runner=spec.run.runner,
        endpoint=str(spec.run.runner_options.get("job_endpoint", "")),
        submitted_at=_dt.datetime.now(_dt.timezone.utc).isoformat(),
        spec=spec.model_dump(mode="json", exclude_none=True),
        node_order=[list(pair) for pair in built.node_order],
        inputs=[_dataset(d) for d in built.inputs],
        outputs=[_dataset(d) for d in built.outputs],
        leases=leases,
        event_log=lineage.emitter.event_log if lineage else None,
        spec_path=spec_path,
        principal=lineage.facts.principal.as_dict() if lineage else None,
        key_uses=[dataclasses.asdict(use) for use in built.key_uses],
    )
    record.save()
    if lineage:
        lineage.emitter.close()  # START delivered before the driver leaves
    return record


def _dataset(d: Any) -> dict[str, Any]:
    return {f.name: getattr(d, f.name) for f in dataclasses.fields(d) if f.name != "schema"}


class _JobService:
    """Beam's Job API (``beam_job_api.proto``) for one job: what a Flink job server and Beam's
    local job service both answer."""

    def __init__(self, endpoint: str, job_id: str) -> None:
        import grpc
        from apache_beam.portability.api import beam_job_api_pb2_grpc

        if not endpoint:
            raise JobError(f"job {job_id}: no job endpoint recorded", hint="--job-endpoint")
        self._job_id = job_id
        self._channel = grpc.insecure_channel(endpoint)
        self._stub = beam_job_api_pb2_grpc.JobServiceStub(self._channel)
        self._endpoint = endpoint

    def _call(self, method: str, request: Any) -> Any:
        import grpc

        try:
            return getattr(self._stub, method)(request, timeout=30)
        except grpc.RpcError as exc:
            raise JobError(
                f"job {self._job_id}: the job service at {self._endpoint} answered "
                f"{exc.code().name}: {exc.details()}",
                hint="is the job service (Flink job server) still running there?",
            ) from None

    def state(self) -> str:
        from apache_beam.portability.api import beam_job_api_pb2

        response = self._call("GetState", beam_job_api_pb2.GetJobStateRequest(job_id=self._job_id))
        return beam_job_api_pb2.JobState.Enum.Name(response.state)

    def cancel(self) -> str:
        from apache_beam.portability.api import beam_job_api_pb2

        response = self._call("Cancel", beam_job_api_pb2.CancelJobRequest(job_id=self._job_id))
        return beam_job_api_pb2.JobState.Enum.Name(response.state)

    def counters(self) -> dict[str, int]:
        from apache_beam.portability.api import beam_job_api_pb2
        from apache_beam.runners.portability.portable_runner import PortableMetrics

        from pipelines.run import read_counters

        response = self._call(
            "GetJobMetrics", beam_job_api_pb2.GetJobMetricsRequest(job_id=self._job_id)
        )
        return read_counters(PortableMetrics(response))

    def close(self) -> None:
        self._channel.close()


def _service(record: JobRecord, endpoint: str | None) -> _JobService:
    return _JobService(endpoint or record.endpoint, record.job_id)


def job_metrics(job_id: str, *, endpoint: str | None = None) -> list[Any]:
    """The job's counts per node so far (committed where the runner has them)."""
    from pipelines.summary import counts_from_metrics

    record = JobRecord.load(job_id)
    service = _service(record, endpoint)
    try:
        return counts_from_metrics(service.counters(), [tuple(p) for p in record.node_order])
    finally:
        service.close()


def job_status(job_id: str, *, endpoint: str | None = None) -> dict[str, Any]:
    """The job's state; once it has ended, its leases are ended and its lineage terminal
    event is emitted (once)."""
    record = JobRecord.load(job_id)
    service = _service(record, endpoint)
    try:
        state = service.state()
        return _settle(record, service, state)
    finally:
        service.close()


def cancel_job(job_id: str, *, endpoint: str | None = None, wait_s: float = 60.0) -> dict[str, Any]:
    """Cancel the job, wait (bounded) for it to end, then settle it as :func:`job_status`."""
    import time

    record = JobRecord.load(job_id)
    service = _service(record, endpoint)
    try:
        state = service.cancel()
        deadline = time.monotonic() + wait_s
        while state not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            state = service.state()
        return _settle(record, service, state)
    finally:
        service.close()


def _settle(record: JobRecord, service: _JobService, state: str) -> dict[str, Any]:
    report: dict[str, Any] = {"job_id": record.job_id, "run_id": record.run_id, "state": state}
    if state not in TERMINAL:
        return report
    from connectors.committer import end_lease

    for lease in record.leases:
        end_lease(lease)
    if record.ended is None:
        record.ended = TERMINAL[state]
        report["lineage"] = _finish_lineage(record, service, record.ended)
        record.save()
    report["ended"] = record.ended
    return report


def _finish_lineage(record: JobRecord, service: _JobService, end: str) -> dict[str, Any]:
    from connectors.secrets.pseudonyms import KeyUse
    from lineage.datasets import Dataset
    from pipelines.lineage_run import LineageSession
    from pipelines.loading import spec_from_data
    from pipelines.principal import Principal
    from pipelines.spec import combining_steps, row_edges
    from pipelines.summary import RunSummary, counts_from_metrics

    spec = spec_from_data(record.spec)
    if not spec.lineage.enabled:
        return {}
    inputs = [Dataset(**d) for d in record.inputs]
    outputs = [Dataset(**d) for d in record.outputs]
    try:
        nodes = counts_from_metrics(service.counters(), [tuple(p) for p in record.node_order])
    except JobError:
        nodes = []
    summary = RunSummary(
        run_id=record.run_id,
        pipeline=record.pipeline,
        template=spec.template,
        runner=record.runner,
        status={"COMPLETE": "COMPLETE", "ABORT": "ABORTED"}.get(end, "FAILED"),
        started_at=record.submitted_at,
        elapsed_seconds=0.0,
        nodes=nodes,
        inputs=inputs,
        outputs=outputs,
        published=True,
        edges=row_edges(spec),
        combining=combining_steps(spec),
    )
    session = LineageSession(
        spec,
        inputs,
        outputs,
        record.run_id,
        event_log=record.event_log,
        spec_path=record.spec_path,
        started=True,
        principal=Principal(**record.principal) if record.principal else None,
        key_uses=[KeyUse(**use) for use in record.key_uses],
    )
    message = {"ABORT": "cancelled", "FAIL": "the detached job failed"}.get(end)
    return session.finish(end, summary, message=message)
