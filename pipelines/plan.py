"""Translate a spec for a runner without running it or reaching any service: ``beamwright plan``.

For ``dataflow`` this is Beam's own DataflowRunner, offline. The spec's graph is built as
``run`` builds it (with ``run.runner`` set to the target, so sources and sinks take their
remote-runner behaviour), then ``DataflowRunner.run_pipeline`` runs with ``dry_run``: its
overrides, side-input and GroupByKey-input rewrites, Docker environments, streaming inference
and streaming experiments, batch pre-optimisation (``pack_combiners``, ``sort_stages``) and
``apiclient.Job``. It stops where the job would be created. From there Beam's
``DataflowApplicationClient.create_job_description`` runs unchanged on a client whose
uploads are recorded instead of sent (``RecordingClient``): it rewrites the SDK
environment images and artifact URLs, and builds the job's ``environment`` (worker pool,
container images, experiments, ``sdkPipelineOptions``, ``version.job_type``). The only
things not done are the uploads to ``staging_location`` (listed in ``staged``) and the
``projects.locations.jobs.create`` call.

What comes back is the v1b3 ``Job`` as JSON exactly as Beam would send it, with one thing
to know: with Runner v2 (the only one Beam 2.77's Python SDK submits to) Beam leaves
``job.steps`` empty. The graph goes to the service as the staged runner-API pipeline proto
(``pipeline.pb``, ``sdkPipelineOptions.options.pipelineUrl``), and the service expands it.
So ``steps`` lists the leaf transforms of that proto (the one that would be staged): name, kind (from the URN), inputs (the steps they read from), splittable,
bounded and windowing of their outputs. ``composites`` lists the enclosing transforms. Not
covered: the service's own expansion (fusion, splittable DoFn expansion, Streaming Engine
shuffles); checks the service or the workers make (quotas, permissions, whether buckets,
topics and images exist); and staging of the project's code for workers (issue 12).

``portable`` and ``flink`` return the proto that Beam's ``PortableRunner.get_proto_pipeline``
makes (default environment from the options, pre-optimisation for batch) as ``steps`` and
``composites``, with no job service started.

Building the graph still does what ``run``'s build does before anything runs: it expands
input globs, reads file schemas, checks output ownership and resolves secrets (a generated
key file is created if missing). Local paths and Kafka addresses need no network. ``gs://``
paths are read through GCS (credentials needed); only the translation itself is offline.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from connectors.errors import BeamwrightError, did_you_mean
from pipelines import spec as s

RUNNERS = ("dataflow", "portable", "flink")
PLAN_RUN_ID = "plan"  # the run id a graph built only to be translated is built under

# Options Dataflow requires and a plan can do without: stand-ins the output names as such.
PLACEHOLDERS = {
    "dataflow": {
        "project": "beamwright-plan",
        "region": "us-central1",
        "temp_location": "gs://beamwright-plan/tmp",
    },
    "flink": {"flink_master": "[auto]"},
    "portable": {"job_endpoint": "localhost:8099"},
}


class PlanError(BeamwrightError, ValueError):
    """The spec cannot be translated for the runner (exit code 2: nothing was submitted)."""


def translate(
    spec: s.PipelineSpec,
    runner: str = "dataflow",
    streaming: bool | None = None,
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The job ``runner`` would receive for ``spec``, as JSON-ready data; nothing runs.

    Args:
        spec: the pipeline; not changed (a copy is built).
        runner: ``dataflow`` (the v1b3 job, see the module docstring), ``portable`` or
            ``flink`` (the runner-API proto's transforms).
        streaming: None: a streaming job when a source is unbounded in the spec (a Kafka
            source with ``bounded: null``). True: a streaming job, with every source that
            can be unbounded made unbounded. False: a batch job; refused when a source is
            unbounded.
        options: Beam pipeline options over ``run.runner_options`` (e.g. ``project``);
            Dataflow's required ones default to placeholders, listed in ``placeholders``.

    Returns:
        ``{"runner", "pipeline", "streaming", "placeholders", "steps", "composites"}`` and,
        for Dataflow, ``"job"`` (the v1b3 Job) and ``"staged"`` (what would be uploaded).

    Raises:
        PlanError or SpecError (path + problem + hint) for a spec or options that cannot be
        translated; nothing is submitted.
    """
    if runner not in RUNNERS:
        raise PlanError(
            f"cannot translate for runner '{runner}'",
            where="run.runner",
            hint=did_you_mean(runner, RUNNERS),
        )
    spec, streaming = _for_runner(spec, runner, streaming)
    settings, placeholders = _settings(spec, runner, dict(options or {}))
    from pipelines.build import discard_unrun

    pipeline = _built(spec, settings, streaming)
    try:
        with _own_temp_dir(), _quiet_sdist_build():
            if runner == "dataflow":
                job, proto, staged = _dataflow_job(pipeline)
            else:
                from apache_beam.runners.portability.portable_runner import PortableRunner

                job, staged = None, None
                proto = _translation(
                    lambda: PortableRunner.get_proto_pipeline(pipeline, pipeline._options)
                )
    finally:
        discard_unrun(pipeline, spec, PLAN_RUN_ID)
    steps, composites = _transforms(proto)
    plan: dict[str, Any] = {
        "runner": runner,
        "pipeline": spec.name,
        "streaming": streaming,
        "placeholders": placeholders,
    }
    if job is not None:
        plan["job"] = job
        plan["staged"] = staged
    plan["steps"] = steps
    plan["composites"] = composites
    return plan


def summary(plan: Mapping[str, Any]) -> str:
    """One line: ``translated: 42 steps, streaming (dataflow)``."""
    mode = "streaming" if plan["streaming"] else "batch"
    line = f"translated: {len(plan['steps'])} steps, {mode} ({plan['runner']})"
    if plan["placeholders"]:
        names = ", ".join(f"{k}={v}" for k, v in plan["placeholders"].items())
        line += f"; placeholders: {names}"
    return line


# --------------------------------------------------------------------------- the spec


def _for_runner(
    spec: s.PipelineSpec, runner: str, streaming: bool | None
) -> tuple[s.PipelineSpec, bool]:
    unbounded = s.streaming_sources(spec)
    if streaming is False and unbounded:
        raise PlanError(
            f"source(s) {', '.join(unbounded)} are unbounded (bounded: null): a batch job "
            "cannot read them",
            where="sources",
            hint="translate a streaming job, or give the Kafka sources bounded: end_offsets",
        )
    from pipelines.checks import unbounded_variant

    spec = unbounded_variant(spec) if streaming else spec.model_copy(deep=True)
    spec.run.runner = runner  # builders take the remote-runner path (e.g. Kafka commits)
    return spec, bool(streaming or unbounded)


def _settings(
    spec: s.PipelineSpec, runner: str, options: dict[str, Any]
) -> tuple[s.RunSettings, dict[str, Any]]:
    """The run settings to translate with (spec options, then ``options``, then placeholders
    for what the runner requires), and the placeholders used."""
    given = {**spec.run.runner_options, **options}
    given.pop("dry_run", None)  # a plan is always a dry run (set on the options, typed)
    placeholders = {k: v for k, v in PLACEHOLDERS[runner].items() if k not in given}
    if runner == "dataflow":
        given["no_auth"] = True  # never look for credentials: nothing is sent
    settings = spec.run.model_copy(update={"runner_options": {**placeholders, **given}})
    return settings, placeholders


# --------------------------------------------------------------------------- Beam


def _built(spec: s.PipelineSpec, settings: s.RunSettings, streaming: bool) -> Any:
    """The spec's graph on a Beam pipeline whose options are the runner's, as a dry run."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import StandardOptions, TestOptions

    from connectors.secrets import left_to_workers
    from pipelines.build import build_pipeline, discard_unrun
    from pipelines.checks import build_problem, refuse_unknown_fields
    from pipelines.ids import job_name
    from pipelines.loading import SpecError
    from pipelines.runners import pipeline_options

    options = pipeline_options(settings, job_name(spec.name))
    if settings.runner == "dataflow":
        _check_gcs_locations(options)
    try:
        options.view_as(StandardOptions).streaming = streaming
        options.view_as(TestOptions).dry_run = True
        pipeline = beam.Pipeline(options=options)
    except ImportError as exc:
        raise _missing_gcp(exc) from None
    except (ValueError, SystemExit) as exc:  # Beam's validation; argparse exits on bad values
        raise PlanError(
            f"the runner options are not valid: {' '.join(str(exc).split())}",
            where="run.runner_options",
            hint="correct them (run.runner_options or --option key=value)",
        ) from None
    try:
        with left_to_workers():  # plan needs no secret: workers resolve them
            built = build_pipeline(spec, pipeline, PLAN_RUN_ID)
        refuse_unknown_fields(spec, built, streaming=streaming)  # as validate --deep
    except BaseException as exc:
        discard_unrun(pipeline, spec, PLAN_RUN_ID)
        if isinstance(exc, SpecError) or not isinstance(exc, Exception):
            raise
        raise SpecError([build_problem(exc)]) from None  # a path and the problem, no traceback
    return pipeline


def _check_gcs_locations(options: Any) -> None:
    """Beam's own check of temp_location/staging_location, before Beam acts on it: when both
    are invalid, Beam's validation goes on to look up (or create) a default bucket in GCS,
    which offline means two minutes of retries before the error."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator

    view = options.view_as(GoogleCloudOptions)
    validator = PipelineOptionsValidator(options, "DataflowRunner")
    errors = {
        name: validator.validate_gcs_path(view, name)
        for name in ("temp_location", "staging_location")
        if getattr(view, name, None) is not None or name == "temp_location"
    }
    if errors and all(errors.values()):
        raise PlanError(
            " ".join(" ".join(errors["temp_location"]).split()),
            where="run.runner_options.temp_location",
            hint="a gs://bucket/path of a bucket name of 3-63 lowercase letters, digits, - _ .",
        )


def _missing_gcp(exc: ImportError) -> PlanError:
    """What Beam raises when a module of the gcp extra is missing that pipelines.extras's check
    (the extra's main modules, before the build) did not look for."""
    from pipelines.extras import install_hint

    return PlanError(
        f"the Dataflow runner is not installed ({exc})",
        where="run.runner",
        hint=f"install the gcp extra: {install_hint('gcp')} (apache-beam[gcp])",
    )


def _translation(step: Any) -> Any:
    """``step()``, with what Beam raises while translating as a PlanError."""
    from pipelines.loading import SpecError

    try:
        return step()
    except (BeamwrightError, SpecError):
        raise
    except ImportError as exc:
        if "gcp" in str(exc) or (exc.name or "").startswith("google"):
            raise _missing_gcp(exc) from None
        raise PlanError(f"cannot translate: {exc}", where="pipeline") from None
    except Exception as exc:  # noqa: BLE001 - reported, never a traceback
        causes = [exc]
        while causes[-1].__cause__ is not None and len(causes) < 5:
            causes.append(causes[-1].__cause__)
        raise PlanError(
            "Beam cannot translate the graph: "
            + ": ".join(f"{type(e).__name__}: {e}" for e in causes),
            where="pipeline",
            hint="the transform named cannot be expressed for this runner; report it with the spec",
        ) from None


def _dataflow_job(pipeline: Any) -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
    """DataflowRunner's dry run, then the job description Beam would send."""
    result = _translation(pipeline.run)
    job = result.job
    client = _translation(lambda: _recording_client(job.options))
    _translation(lambda: client.create_job_description(job))
    return json.loads(job.json()), job.proto_pipeline, client.staged


def _recording_client_class() -> type:
    from apache_beam.runners.dataflow.internal import apiclient

    class RecordingClient(apiclient.DataflowApplicationClient):
        """Beam's Dataflow client, minus every connection: no credentials, no API or
        storage clients; files it would upload are listed in ``staged`` instead."""

        def __init__(self, options: Any) -> None:  # no super().__init__: it makes clients
            self.standard_options = options.view_as(apiclient.StandardOptions)
            self.google_cloud_options = options.view_as(apiclient.GoogleCloudOptions)
            self._enable_caching = False  # caching would ask GCS what it already holds
            self._root_staging_location = self.google_cloud_options.staging_location
            self.environment_version = apiclient._FNAPI_ENVIRONMENT_MAJOR_VERSION
            self._sdk_image_overrides = self._get_sdk_image_overrides(options)
            self.staged: list[dict[str, Any]] = []

        def stage_file_with_retry(
            self,
            gcs_or_local_path: str,
            file_name: str,
            stream_or_path: Any,
            mime_type: str = "application/octet-stream",
            total_size: int | None = None,
        ) -> None:
            if isinstance(stream_or_path, io.BytesIO):
                total_size = len(stream_or_path.getbuffer())
            self.staged.append(
                {"location": gcs_or_local_path, "name": file_name, "bytes": total_size}
            )

        def stage_file(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("a plan never uploads")  # stage_file_with_retry records

        def submit_job_description(self, job: Any) -> Any:
            raise AssertionError("a plan never submits")

    return RecordingClient


def _recording_client(options: Any) -> Any:
    return _recording_client_class()(options)


@contextlib.contextmanager
def _own_temp_dir() -> Iterator[None]:
    """Beam's stager writes the files it would stage (the pickled main session, the list of
    installed packages) into a ``mkdtemp`` it never removes; make that one ours."""
    with tempfile.TemporaryDirectory(prefix="beamwright-plan-") as path:
        previous, tempfile.tempdir = tempfile.tempdir, path
        try:
            yield
        finally:
            tempfile.tempdir = previous


@contextlib.contextmanager
def _quiet_sdist_build() -> Iterator[None]:
    """Beam's stager builds the project's sdist (``python -m build``, for ``setup_file``) with
    the child's stderr on ours: setuptools' progress and warnings filled every plan. Here the
    child's stderr joins its captured stdout, which Beam drops when the build succeeds; when it
    fails, its end goes to our stderr, since Beam's error for a failed pyproject build
    ("Failed to build package ...") drops the child's output."""
    import subprocess
    import sys

    from apache_beam.utils import processes

    original = processes.check_output

    def check_output(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("stderr", subprocess.STDOUT)
        try:
            return original(*args, **kwargs)
        except RuntimeError as exc:
            output = getattr(exc.__cause__, "output", None) or b""
            text = output.decode(errors="replace") if isinstance(output, bytes) else output
            if text:
                command = " ".join(map(str, args[0])) if args else "a subprocess"
                print(f"beamwright: {command} failed:\n{text[-4000:]}", file=sys.stderr)
            raise

    processes.check_output = check_output
    try:
        yield
    finally:
        processes.check_output = original


# --------------------------------------------------------------------------- the graph


def _transforms(proto: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """The proto's leaf transforms (``steps``) in graph order, and its composites."""
    from apache_beam.portability.api import beam_runner_api_pb2

    components = proto.components
    producers = {
        pcoll: tid
        for tid, t in components.transforms.items()
        if not t.subtransforms
        for pcoll in t.outputs.values()
    }
    steps: list[dict[str, Any]] = []
    composites: list[str] = []

    def windowing(pcoll_id: str) -> str:
        strategy = components.windowing_strategies[
            components.pcollections[pcoll_id].windowing_strategy_id
        ]
        return strategy.window_fn.urn.removeprefix("beam:window_fn:")

    def visit(tid: str) -> None:
        t = components.transforms[tid]
        if t.subtransforms:
            if t.unique_name and t.unique_name != tid:  # not the unnamed root
                composites.append(t.unique_name)
            for child in t.subtransforms:
                visit(child)
            return
        step: dict[str, Any] = {
            "name": t.unique_name,
            "kind": _kind(t.spec.urn),
            "urn": t.spec.urn,
            "inputs": sorted(
                {
                    components.transforms[producers[p]].unique_name
                    for p in t.inputs.values()
                    if p in producers
                }
            ),
        }
        if t.spec.urn == "beam:transform:pardo:v1":
            payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
            step["splittable"] = bool(payload.restriction_coder_id)
        outputs = list(t.outputs.values())
        if outputs:
            step["bounded"] = all(
                components.pcollections[p].is_bounded == beam_runner_api_pb2.IsBounded.BOUNDED
                for p in outputs
            )
            step["windowing"] = sorted({windowing(p) for p in outputs})
        steps.append(step)

    for root in proto.root_transform_ids:
        visit(root)
    return steps, composites


def _kind(urn: str) -> str:
    """``beam:transform:group_by_key:v1`` -> ``GroupByKey``; other URNs as they are."""
    parts = urn.split(":")
    if len(parts) == 4 and parts[:2] == ["beam", "transform"]:
        return "".join(word.capitalize() for word in parts[2].split("_")).replace("Pardo", "ParDo")
    return urn
