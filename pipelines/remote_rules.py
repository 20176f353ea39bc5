"""What a spec must satisfy before it is sent to workers that are not this process.

On Flink, Dataflow, or a portable runner whose SDK workers run elsewhere (any environment but
``LOOPBACK``), a worker has its own working directory and its own environment: a relative path
lands in the worker's directory (or nowhere it can be found), and ``{env: ...}`` or ``{file:
...}`` secrets name variables and files of the driver's machine. So before submitting, every
path the workers open must be absolute or remote (``gs://``, ``s3://``), and secrets must come
from a store, unless ``run.allow_local_secrets`` says the workers share the driver's secrets
(e.g. a worker image with the variable set). The rules are checked without Beam, by ``run``
(before anything is claimed) and by ``validate``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator

from pipelines import registry
from pipelines import spec as s
from pipelines.extras import spec_models
from pipelines.spec_base import SecretSpec

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]+://")


def remote_workers(settings: s.RunSettings) -> bool:
    """Whether the run's SDK workers are other processes than the driver."""
    if settings.runner == "direct":
        return False
    if settings.runner == "portable":
        return settings.runner_options.get("environment_type", "LOOPBACK") != "LOOPBACK"
    return True


def remote_problems(spec: s.PipelineSpec) -> list[str]:
    """Paths workers could not find and secrets they could not read, for a remote runner."""
    if not remote_workers(spec.run):
        return []
    hint = "workers run in their own directory: use an absolute or gs:// / s3:// path"
    problems = [
        f"{where}: '{path}' is relative; {hint}"
        for where, path in _worker_paths(spec)
        if not (_SCHEME.match(path) or posixpath.isabs(path))
    ]
    if not spec.run.allow_local_secrets:
        problems += [
            f"{where}: {'an' if kind == 'env' else 'a'} {kind} secret is read on the driver's "
            f"machine, which workers on "
            f"'{spec.run.runner}' do not share; use a secret store ({{store: ...}}), or set "
            "run.allow_local_secrets: true if the workers have it too"
            for where, kind in _local_secrets(spec)
        ]
    return problems


def _worker_paths(spec: s.PipelineSpec) -> Iterator[tuple[str, str]]:
    for role, nodes in (("sources", spec.sources), ("sinks", spec.sinks)):
        for i, node in enumerate(nodes):
            for sub, path, _ in registry.kind_of(node).paths(node):
                yield f"{role}[{i}].{sub}", path
    if spec.dead_letter.path:
        yield "dead_letter.path", spec.dead_letter.path
    if spec.run.temp_location:
        yield "run.temp_location", spec.run.temp_location


def _local_secrets(spec: s.PipelineSpec) -> Iterator[tuple[str, str]]:
    """(spec path, env|file) of every secret the spec reads from the driver's machine."""
    for where, model in spec_models(spec):
        if isinstance(model, SecretSpec) and (model.env is not None or model.file is not None):
            yield where, "env" if model.env is not None else "file"
