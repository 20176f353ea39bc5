"""Runner profiles: the Beam options behind ``run.runner`` = direct | portable | flink | dataflow.

``direct`` is Beam's in-process FnApiRunner — what the DirectRunner itself uses for batch
pipelines — chosen explicitly because Beam 2.77's DirectRunner first tries to download the
Prism runner, which fails (slowly) without internet. ``portable`` submits to a Beam job
service (a Flink job server speaks the same Job API). ``flink`` and ``dataflow`` pass through
to Beam's runners; their required options come from ``run.runner_options``.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import BeamwrightError
from pipelines.spec import RunSettings

REQUIRED = {
    "portable": ("job_endpoint",),
    "flink": ("flink_master",),
    "dataflow": ("project", "region", "temp_location"),
}

_RUNNER_CLASS = {
    "direct": "FnApiRunner",
    "portable": "PortableRunner",
    "flink": "FlinkRunner",
    "dataflow": "DataflowRunner",
}


class RunnerConfigError(BeamwrightError, ValueError):
    """A runner profile lacks an option it needs."""


def option_values(settings: RunSettings, job_name: str) -> dict[str, Any]:
    """The pipeline options for ``settings`` as a plain dict (no secrets ever go in here)."""
    missing = [o for o in REQUIRED.get(settings.runner, ()) if o not in settings.runner_options]
    if missing:
        raise RunnerConfigError(
            f"run.runner_options: runner '{settings.runner}' needs {', '.join(missing)}; "
            f"add them, e.g. runner_options: {{{missing[0]}: ...}}"
        )
    values: dict[str, Any] = {"runner": _RUNNER_CLASS[settings.runner], "job_name": job_name}
    if settings.runner == "direct":
        values["direct_num_workers"] = settings.direct_num_workers
        values["direct_running_mode"] = (
            "in_memory" if settings.direct_num_workers == 1 else "multi_threading"
        )
    if settings.runner == "portable":
        values.setdefault("environment_type", "LOOPBACK")
    values.update(settings.runner_options)
    return values


def pipeline_options(settings: RunSettings, job_name: str) -> Any:
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions.from_dictionary(
        {k: v for k, v in option_values(settings, job_name).items()}
    )
