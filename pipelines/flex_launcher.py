"""The program a Dataflow Flex Template launches: ``python main.py --param=value ...``.

Google's Flex launcher runs ``$FLEX_TEMPLATE_PYTHON_PY_FILE`` (the ``main.py`` that
``beamwright flex build`` writes, which calls :func:`main`) with every template parameter and
every Beam option as one ``--name=value`` argument, adds ``--setup_file`` from
``$FLEX_TEMPLATE_PYTHON_SETUP_FILE``, and expects the program to *submit* the job and return:
it must not wait for the job to finish. So :func:`main`

1. splits the arguments: names the template declares are template parameters (typed and
   checked by :func:`pipelines.loading.resolve_parameters`, as ``beamwright run -p`` does);
   everything else goes to Beam's ``PipelineOptions`` unchanged;
2. expands the template and builds its graph as ``beamwright plan`` does for Dataflow
   (``pipelines.plan._for_runner``, reused: the remote-runner path of sources and sinks, a streaming
   job when a source is unbounded);
3. refuses what workers elsewhere could not use, as ``run`` does (:mod:`pipelines.remote_rules`:
   relative paths; env and file secrets unless ``--allow_local_secrets=true``);
4. calls ``pipeline.run()`` and returns, never ``wait_until_finish``.

``--runner`` defaults to ``DataflowRunner``. With ``--dry_run=True`` Beam's DataflowRunner
translates the job and stops before creating it (what the tests do, offline).

A batch job publishes its own outputs: the launcher sets ``run.publish: pipeline``, so the
job's last step checks the error threshold and publishes every staged output, or drops them
and fails the job (:mod:`connectors.pipeline_publish`). Streaming jobs publish each pane from
inside the pipeline. Not done, because the launcher is gone once the job is submitted: the
rest of the driver's part of ``beamwright run`` (claiming outputs, the reconciliation of
every node's counters, OpenLineage events, merging column profiles: the spec's
``run.temp_location`` is not set from ``--temp_location``, since nothing would read the
partial profiles), and specs with steps only a driver can do around publishing (Kafka
offsets, since checkpoints, table-level expectations, notifications) are refused.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK, BeamwrightError

TEMPLATE_ENV = "BEAMWRIGHT_TEMPLATE"  # set in the image by the generated Dockerfile
# ``run.allow_local_secrets`` as a launch argument (consumed here, never passed to Beam): env and
# file secrets are refused on Dataflow unless the workers have them too (pipelines.remote_rules).
ALLOW_LOCAL_SECRETS = "--allow_local_secrets"


def split_arguments(
    declared: Mapping[str, Any], argv: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    """``(template parameters, Beam arguments)`` from launcher arguments.

    ``--name=value`` (or ``--name value``) whose name the template declares is a parameter;
    every other argument is passed to Beam as it came.
    """
    params: dict[str, str] = {}
    beam_args: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        name, sep, value = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if name in declared:
            if not sep:  # --name value
                if i + 1 >= len(args):
                    raise LaunchError(f"--{name} needs a value", where="arguments")
                i += 1
                value = args[i]
            params[name] = value
        else:
            beam_args.append(arg)
        i += 1
    return params, beam_args


class LaunchError(BeamwrightError, ValueError):
    """The launch arguments are wrong (exit code 2: nothing was submitted)."""


def launch(spec: Any, beam_args: Sequence[str]) -> Any:
    """Build ``spec`` on a pipeline with ``beam_args`` and submit it; the runner's result,
    not waited for. ``--allow_local_secrets=true`` among ``beam_args`` sets
    ``run.allow_local_secrets``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        StandardOptions,
    )

    from pipelines.build import build_pipeline, discard_unrun
    from pipelines.ids import job_name, new_run_id
    from pipelines.loading import SpecError
    from pipelines.plan import _for_runner as for_runner
    from pipelines.remote_rules import remote_problems
    from pipelines.runners import cache_dofn_specs

    spec, streaming = for_runner(spec, "dataflow", None)
    if not streaming:  # no driver waits for a Flex job: the job publishes its own outputs
        spec.run.publish = "pipeline"
    cache_dofn_specs()
    beam_args = list(beam_args)
    for arg in [a for a in beam_args if a.split("=")[0] == ALLOW_LOCAL_SECRETS]:
        beam_args.remove(arg)
        value = arg.partition("=")[2].lower()
        spec.run.allow_local_secrets = value in ("", "true", "1", "yes", "on")
    options = PipelineOptions(beam_args)
    problems = remote_problems(spec)  # workers are elsewhere: absolute or remote paths only
    if problems:
        raise SpecError(problems)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DataflowRunner"
    if streaming:
        standard.streaming = True
    cloud = options.view_as(GoogleCloudOptions)
    if not cloud.job_name:
        cloud.job_name = job_name(spec.name)
    try:
        pipeline = beam.Pipeline(options=options)
    except (ValueError, SystemExit) as exc:  # Beam's validation; argparse exits on bad values
        raise LaunchError(
            f"the Beam options are not valid: {' '.join(str(exc).split())}", where="arguments"
        ) from None
    run_id = new_run_id()
    try:
        build_pipeline(spec, pipeline, run_id)
    except BaseException:
        discard_unrun(pipeline, spec, run_id)  # refused: nothing will run it
        raise
    return pipeline.run()  # Flex: submit and return; never wait_until_finish


def main(argv: Sequence[str] | None = None, template: str | None = None) -> int:
    """Expand ``template`` (default: ``$BEAMWRIGHT_TEMPLATE``) with the ``--param=value``
    arguments and submit it with the rest as Beam options. 0 when submitted, 2 when the
    arguments or the template are wrong (nothing submitted)."""
    import templates
    from pipelines.loading import SpecError, expand_template

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    name = template or os.environ.get(TEMPLATE_ENV)
    try:
        if not name:
            raise LaunchError(
                "no template to launch", hint=f"set {TEMPLATE_ENV} (the generated image does)"
            )
        try:
            tpl = templates.get_template(name)
        except KeyError as exc:
            raise LaunchError(str(exc.args[0]), where=TEMPLATE_ENV) from None
        params, beam_args = split_arguments(tpl.parameters, argv)
        spec = expand_template(tpl, params)
        result = launch(spec, beam_args)
    except (BeamwrightError, SpecError) as exc:
        print(f"beamwright flex launcher: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INVALID)
    job_id = result.job_id() if hasattr(result, "job_id") else None  # none for a dry run
    print(f"beamwright flex launcher: submitted {name} ({result.state}); job id: {job_id}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
