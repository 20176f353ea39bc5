"""``beamwright container --out DIR``: a custom Beam SDK worker image with beamwright in it.

By default workers get the project as an sdist Beam's stager builds from ``pyproject.toml``
and installs at every worker start (:func:`pipelines.runners.ships_code`). Teams that prefer
images (faster worker start, no build on the driver, a scanned and pinned artifact) build one
from Apache Beam's own SDK image for the same Beam and Python versions as the driver, since a
worker of another version cannot run the driver's pipeline proto. The image keeps Beam's
``/opt/apache/beam/boot`` entrypoint, so it is a drop-in SDK container: Dataflow takes it as
``sdk_container_image``, a portable or Flink runner as ``environment_type=DOCKER`` with
``environment_config=IMAGE``; giving it turns the sdist staging off.

No Beam import: the versions come from package metadata.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

from connectors.errors import EXIT_INVALID, EXIT_OK, BeamwrightError
from pipelines.project_source import copy_project

EXTRAS = ("gcp", "aws", "vault", "postgres")


def base_image() -> str:
    """Beam's SDK image for this driver's Beam and Python (``apache/beam_python3.11_sdk:2.77.0``)."""
    return f"apache/beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:{version('apache-beam')}"


def dockerfile(extras: list[str], image: str) -> str:
    target = f"/opt/beamwright[{','.join(extras)}]" if extras else "/opt/beamwright"
    return f"""\
# A Beam SDK worker image with beamwright installed (written by `beamwright container`).
# Build context: this directory. Keep Beam's entrypoint (/opt/apache/beam/boot): the runner
# starts workers through it.
ARG BASE_IMAGE={image}
FROM ${{BASE_IMAGE}}

COPY project/ /opt/beamwright/
# apache-beam is pinned in pyproject.toml to the base image's version: pip keeps the image's.
RUN pip install --no-cache-dir "{target}"
"""


def write(out: Path, extras: list[str]) -> str:
    """Write ``Dockerfile`` and ``project/`` into ``out``; returns the base image."""
    unknown = sorted(set(extras) - set(EXTRAS))
    if unknown:
        raise BeamwrightError(
            f"unknown extra(s): {', '.join(unknown)}",
            where="--extra",
            hint=f"choose from {', '.join(EXTRAS)}",
        )
    image = base_image()
    out.mkdir(parents=True, exist_ok=True)
    copy_project(out / "project")
    (out / "Dockerfile").write_text(dockerfile(extras, image), encoding="utf-8")
    return image


def usage(out: Path) -> list[str]:
    image = "REGION-docker.pkg.dev/PROJECT/REPOSITORY/beamwright-worker:TAG"
    return [
        f"docker build -t {image} {out}    (or: gcloud builds submit {out} --tag {image})",
        f"Dataflow:        beamwright run ... --runner dataflow --option sdk_container_image={image}",
        "Flink/portable:  beamwright run ... --runner flink --option environment_type=DOCKER "
        f"--option environment_config={image}",
    ]


def cmd_container(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        image = write(out, args.extra)
    except BeamwrightError as exc:
        print(f"beamwright container: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INVALID)
    print(f"wrote {out}/Dockerfile (from {image}) and {out}/project/")
    print("then:")
    for line in usage(out):
        print(f"  {line}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "container", help="write a custom Beam SDK worker image (Dockerfile) with beamwright"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    p.add_argument(
        "--extra",
        action="append",
        default=[],
        choices=EXTRAS,
        help="optional dependencies to install too (repeatable), e.g. --extra gcp",
    )
    p.set_defaults(func=cmd_container)
