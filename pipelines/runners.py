"""Runner profiles: the Beam options behind ``run.runner`` = direct | portable | flink | dataflow.

``direct`` is Beam's in-process FnApiRunner — what the DirectRunner itself uses for batch
pipelines — chosen explicitly because Beam 2.77's DirectRunner first tries to download the
Prism runner, which fails (slowly) without internet. ``portable`` submits to a Beam job
service (a Flink job server speaks the same Job API). ``flink`` and ``dataflow`` pass through
to Beam's runners; their required options come from ``run.runner_options``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from connectors.errors import BeamwrightError, closest
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


def option_values(
    settings: RunSettings, job_name: str, *, streaming: bool = False
) -> dict[str, Any]:
    """The pipeline options for ``settings`` as a plain dict (no secrets ever go in here);
    ``streaming`` for a spec with an unbounded source."""
    missing = [o for o in REQUIRED.get(settings.runner, ()) if o not in settings.runner_options]
    if missing:
        raise RunnerConfigError(
            f"run.runner_options: runner '{settings.runner}' needs {', '.join(missing)}; "
            f"add them, e.g. runner_options: {{{missing[0]}: ...}}"
        )
    values: dict[str, Any] = {"runner": _RUNNER_CLASS[settings.runner], "job_name": job_name}
    if streaming:
        values["streaming"] = True
    if settings.runner == "direct":
        values["direct_num_workers"] = settings.direct_num_workers
        values["direct_running_mode"] = (
            "in_memory" if settings.direct_num_workers == 1 else "multi_threading"
        )
        if settings.direct_num_workers > 1:  # threaded workers: see pipelines.direct_runner
            values["runner"] = "pipelines.direct_runner.ElementAlignedFnApiRunner"
    if settings.runner == "portable":
        values.setdefault("environment_type", "LOOPBACK")
    values.update(settings.runner_options)
    setup_file = project_setup_file()
    if setup_file and ships_code(values):
        values["setup_file"] = setup_file
    return values


# Options by which a user says how the workers get the project's code themselves.
CODE_OPTIONS = ("setup_file", "extra_packages", "sdk_container_image", "requirements_file")


def ships_code(values: dict[str, Any]) -> bool:
    """Whether the project must be staged for this run's workers: on Dataflow and Flink, and
    portable runs whose workers Beam's boot starts (DOCKER, PROCESS), unless the user gave the
    code another way (a container image, a package, a setup or requirements file). LOOPBACK
    workers are the driver; EXTERNAL workers are a pool the user started with what it has."""
    if any(values.get(name) for name in CODE_OPTIONS):
        return False
    if values.get("runner") in ("DataflowRunner", "FlinkRunner"):
        return values.get("environment_type") not in ("LOOPBACK", "EXTERNAL")
    if values.get("runner") == "PortableRunner":
        return values.get("environment_type", "LOOPBACK") in ("DOCKER", "PROCESS")
    return False


@functools.cache
def project_setup_file() -> str | None:
    """The project's ``pyproject.toml`` when beamwright runs from a source tree (a checkout or
    an editable install): Beam's stager builds an sdist of it for the workers (setuptools>=77
    reads pyproject-only projects). None for an installed wheel: then the workers need an
    image with beamwright (``beamwright container``) or ``--option extra_packages=...``."""
    from pipelines.project_source import source_root

    root = source_root()
    return str(root / "pyproject.toml") if root else None


def pipeline_options(settings: RunSettings, job_name: str, *, streaming: bool = False) -> Any:
    """The one place values become Beam PipelineOptions. They are given typed (as keyword
    overrides), not turned back into flags: ``from_dictionary`` made ``dry_run: true`` a bare
    ``--dry_run`` flag, which Beam's argparse refuses."""
    cache_dofn_specs()
    values = option_values(settings, job_name, streaming=streaming)
    return _options_class()(flags=[], **values)


def typed_option(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--option``, the value typed as YAML reads it: ``true`` is a bool,
    ``3`` an int, ``[a, b]`` a list, anything else text."""
    from pipelines.loading import parse_yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RunnerConfigError(
            f"--option {text}: expected key=value", hint="e.g. --option max_num_workers=4"
        )
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except Exception:  # noqa: BLE001 - not YAML: the text itself
        value = raw
    if isinstance(value, (dict, list, str, int, float, bool)):
        return key.strip(), value
    return key.strip(), raw


def beam_flags(flags: Sequence[str]) -> dict[str, Any]:
    """Standard Beam options given after ``--`` (``--project=p --streaming``), typed by Beam's
    own option parsers; a flag no Beam option knows is refused with the closest name."""
    from apache_beam.options.pipeline_options import PipelineOptions

    known = set(PipelineOptions(flags=[]).get_all_options())
    for flag in flags:
        name = flag[2:].split("=", 1)[0] if flag.startswith("--") else ""
        if flag.startswith("--") and name not in known:
            guess = closest(name, sorted(known))
            raise RunnerConfigError(
                f"{flag}: not a Beam pipeline option",
                hint=f"did you mean --{guess}?" if guess else "see Beam's pipeline options",
            )
    given = PipelineOptions(flags=list(flags)).get_all_options(drop_default=True)
    return {k: v for k, v in given.items() if v is not None}


def option_overrides(options: Sequence[str], flags: Sequence[str]) -> dict[str, Any]:
    """Runner options from the command line: ``--option key=value`` pairs, then the standard
    Beam flags after ``--`` (which win). They go over the spec's ``run.runner_options``."""
    values = dict(typed_option(text) for text in options)
    if flags:
        values.update(beam_flags(flags))
    if isinstance(values.get("dry_run"), str):  # Beam parses --dry_run=false as the text
        values["dry_run"] = values["dry_run"].strip().lower() in ("true", "1", "yes", "on")
    return values


def runs_streaming(settings: RunSettings) -> bool:
    """Whether the configured runner can run an unbounded pipeline to its sinks. The local
    FnApiRunner cannot: it runs a graph stage by stage, so an endless read never reaches its
    sinks (``runner_options: {runner: ...}`` names another Beam runner explicitly)."""
    return settings.runner != "direct" or "runner" in settings.runner_options


@functools.cache
def cache_dofn_specs() -> None:
    """Make Beam inspect each DoFn class's methods once per process instead of ~10 times.

    ``userstate.get_dofn_specs`` (does this DoFn use state or timers?) runs
    ``inspect.signature`` on every method of a DoFn each time the graph is translated, a
    stage is planned or a bundle processor is made: ~400 calls and ~12,000 signatures for the
    main job, a quarter of a 2.5 s demo. Its answer depends only on the DoFn's class (state
    and timer specs are method defaults), so it is cached per class, and per callable for the
    wrappers of Map/FlatMap callables; errors are not cached.
    Beam is pinned (2.77), where every caller but the legacy DirectRunner's evaluator reads
    the function through the module, as patched here.
    """
    from apache_beam.transforms import userstate
    from apache_beam.transforms.core import CallableWrapperDoFn

    original = userstate.get_dofn_specs
    specs: dict[Any, Any] = {}

    def get_dofn_specs(dofn: Any) -> Any:
        key: Any = type(dofn)
        if isinstance(dofn, CallableWrapperDoFn):  # Map/FlatMap: the answer is the callable's
            key = (key, dofn._fn)
            try:
                hash(key)
            except TypeError:  # an unhashable callable object: ask Beam every time
                return original(dofn)
        if key not in specs:
            specs[key] = original(dofn)
        return specs[key]

    userstate.get_dofn_specs = get_dofn_specs


@functools.cache
def _options_class() -> Any:
    """PipelineOptions whose views are made once per class.

    Beam builds a view (``options.view_as(TypeOptions)``) for every transform it applies, and
    each view builds an argparse parser of every registered option: on the main job that was
    ~530 parsers, a third of graph construction. A view holds no state of its own (it reads
    and writes the options' shared values, as Beam documents), so one per class is the same.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    class OnceViewedOptions(PipelineOptions):
        def view_as(self, cls: Any) -> Any:
            views = self.__dict__.setdefault("_beamwright_views", {})
            if cls not in views:
                views[cls] = super().view_as(cls)
            return views[cls]

    return OnceViewedOptions
