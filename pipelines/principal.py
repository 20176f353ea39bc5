"""Who runs a pipeline: the principal every run records in its lineage (issue 17).

Precedence, first match wins:

1. ``beamwright run --as PRINCIPAL`` (kept in the spec's ``lineage.run_as``, so a detached
   job's record carries it): source ``--as``.
2. ``$BEAMWRIGHT_PRINCIPAL``: source ``env:BEAMWRIGHT_PRINCIPAL``. For service accounts and
   schedulers that run as a shared OS user.
3. The CI system's user, from the variables each system documents (:data:`CI_SYSTEMS`):
   source ``ci:<system>``, type ``ci``.
4. The OS user (``getpass.getuser()``): source ``os``.

A name given as ``service:NAME`` (or ``user:NAME``) sets the type; otherwise ``--as`` and the
environment variable name a user. Nothing here reads a secret, and only the name, its type and
where it came from are recorded. No Beam.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass

ENV_VAR = "BEAMWRIGHT_PRINCIPAL"

CI_SYSTEMS: tuple[tuple[str, str, str], ...] = (
    # (system, variable the system sets when a job runs on it, variable naming the user)
    ("github", "GITHUB_ACTIONS", "GITHUB_ACTOR"),  # the person or app that started the workflow
    ("gitlab", "GITLAB_CI", "GITLAB_USER_LOGIN"),  # the user who started the pipeline
    ("azure-pipelines", "TF_BUILD", "BUILD_REQUESTEDFOR"),  # Build.RequestedFor
    ("circleci", "CIRCLECI", "CIRCLE_USERNAME"),  # the user who triggered the pipeline
    ("jenkins", "JENKINS_URL", "BUILD_USER_ID"),  # set by Jenkins' build-user-vars plugin
)
"""CI systems and their documented variables, in the order they are tried."""

TYPES = ("user", "service", "ci")


@dataclass(frozen=True)
class Principal:
    """Who ran a run: ``name``, ``type`` (user, service or ci) and ``source`` (where the name
    came from: ``--as``, ``env:BEAMWRIGHT_PRINCIPAL``, ``ci:github``, ``os``)."""

    name: str
    type: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def resolve(run_as: str | None = None, env: Mapping[str, str] | None = None) -> Principal:
    """The principal of a run, by the precedence in the module docstring."""
    env = os.environ if env is None else env
    if run_as:
        return _typed(run_as, "--as")
    if env.get(ENV_VAR):
        return _typed(env[ENV_VAR], f"env:{ENV_VAR}")
    for system, marker, user in CI_SYSTEMS:
        if env.get(marker) and env.get(user):
            return Principal(env[user], "ci", f"ci:{system}")
    return Principal(_os_user(), "user", "os")


def _typed(value: str, source: str) -> Principal:
    kind, colon, name = value.partition(":")
    if colon and kind in ("user", "service") and name:
        return Principal(name, kind, source)
    return Principal(value, "user", source)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (some containers)
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"
