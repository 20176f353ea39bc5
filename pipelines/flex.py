"""``beamwright flex build TEMPLATE --out DIR``: a Dataflow Flex Template for a template.

DIR gets everything ``gcloud`` needs, and nothing else has to be next to it:

- ``metadata.json``: the template's parameters as Flex Template metadata (``name``, ``label``,
  ``helpText``, ``isOptional``, ``regexes``, ``paramType``, ``defaultValue``) plus ``streaming``
  (a source of the default expansion is unbounded) and ``supportsAtLeastOnce`` (streaming
  jobs: beamwright's Kafka reading is at-least-once and its pane files are deterministic).
  The structure follows Google's metadata files (see ``tests/test_flex.py``).
- ``Dockerfile``: Google's Python launcher base image, ``FLEX_TEMPLATE_PYTHON_PY_FILE`` (the
  launcher below) and ``FLEX_TEMPLATE_PYTHON_SETUP_FILE`` (``pyproject.toml``: Beam's stager
  builds an sdist of the project for the workers). The project is installed in the image so
  the launcher can import it.
- ``main.py``: calls :func:`pipelines.flex_launcher.main` for this template.
- ``project/``: a copy of the project (``pyproject.toml``, ``README.md``, the packages) for
  the image.

No Beam import here: building the files only reads the template's parameters and expands it
with its defaults (a spec, not a graph).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from connectors.errors import EXIT_INVALID, EXIT_OK, BeamwrightError
from pipelines.project_source import copy_project

BASE_IMAGE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"

# What a value of each parameter type must look like (a list: comma-separated, as
# pipelines.loading._coerce reads it; its JSON-array form is not offered through Flex).
TYPE_REGEXES = {
    "integer": r"^-?[0-9]+$",
    "number": r"^-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$",
    "boolean": r"^([Tt]rue|[Ff]alse|TRUE|FALSE|1|0|yes|no|on|off)$",
}


class FlexError(BeamwrightError, ValueError):
    """The Flex Template cannot be built (exit code 2: nothing was written)."""


# --------------------------------------------------------------------------- metadata.json


def _label(name: str) -> str:
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _text(value: Any) -> str:
    """A parameter value as the text a launch argument carries."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_text(v) for v in value)
    return str(value)


def _regexes(param: Any) -> list[str]:
    if param.choices:
        one = "(" + "|".join(re.escape(_text(c)) for c in param.choices) + ")"
        return [f"^{one}(,{one})*$" if param.type == "list" else f"^{one}$"]
    regex = TYPE_REGEXES.get(param.type)
    return [regex] if regex else []


def parameter_metadata(name: str, param: Any) -> dict[str, Any]:
    """One entry of ``metadata.json``'s ``parameters`` for a ``ParameterSpec``."""
    help_text = param.description or _label(name)
    if param.type == "list":
        help_text = help_text.rstrip() + " Comma-separated."
    entry: dict[str, Any] = {
        "name": name,
        "label": _label(name),
        "helpText": help_text,
    }
    if not param.required or param.default is not None:
        entry["isOptional"] = True
    entry["regexes"] = _regexes(param)
    entry["paramType"] = "TEXT"
    if param.default is not None:
        entry["defaultValue"] = _text(param.default)
    return entry


def is_streaming(template: Any) -> bool:
    """Whether the template's expansion with its defaults has an unbounded source."""
    from pipelines.loading import SpecError, resolve_parameters
    from pipelines.spec import streaming_sources

    try:
        spec = template.expand(resolve_parameters(template.parameters, {}))
    except (SpecError, ValueError) as exc:
        raise FlexError(
            f"cannot expand template '{template.name}' with its defaults to tell whether it "
            f"is a streaming job: {exc}",
            where="parameters",
            hint="give the required parameters defaults, or pass --streaming / --batch",
        ) from None
    return bool(streaming_sources(spec))


def metadata(template: Any, streaming: bool | None = None) -> dict[str, Any]:
    """``metadata.json`` for ``template``; ``streaming`` None: from its default expansion."""
    if streaming is None:
        streaming = is_streaming(template)
    return {
        "name": template.name,
        "description": template.description,
        "streaming": streaming,
        "supportsAtLeastOnce": streaming,
        "parameters": [parameter_metadata(n, p) for n, p in template.parameters.items()],
    }


# --------------------------------------------------------------------------- image


def dockerfile(template_name: str, base_image: str = BASE_IMAGE) -> str:
    return f"""\
# The Flex Template launcher image of beamwright template '{template_name}'
# (written by `beamwright flex build`). Build context: this directory.
ARG BASE_IMAGE={base_image}
FROM ${{BASE_IMAGE}}

WORKDIR /template
COPY project/ /template/
COPY main.py /template/main.py

# The Flex launcher runs the PY_FILE with every parameter and Beam option as --name=value and
# passes --setup_file: Beam builds an sdist of the project from pyproject.toml for the workers.
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/main.py \\
    FLEX_TEMPLATE_PYTHON_SETUP_FILE=/template/pyproject.toml \\
    BEAMWRIGHT_TEMPLATE={template_name}

# The launcher imports the project (and Beam's Dataflow runner) at launch time; Beam's stager
# builds the workers' sdist from pyproject.toml with `python -m build --no-isolation`, which
# needs build and setuptools>=77 (pyproject.toml's SPDX license string) here.
RUN pip install --no-cache-dir "/template[gcp]" build==1.6.1 setuptools==84.2.1
"""


def main_py(template_name: str) -> str:
    return f'''\
"""Flex Template launcher of beamwright template {template_name!r} (written by
`beamwright flex build`): see pipelines/flex_launcher.py."""

import sys

from pipelines.flex_launcher import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], template={template_name!r}))
'''


# --------------------------------------------------------------------------- commands


def gcloud_commands(template: Any, out: Path) -> list[str]:
    """The ``gcloud`` commands that build the image and template spec, and launch a job."""
    template_name = template.name
    given = [
        f"{n}=VALUE" for n, p in template.parameters.items() if p.required and p.default is None
    ]
    if "output_dir" in template.parameters:
        given.append("output_dir=gs://BUCKET/out")
    parameters = f" --parameters {','.join(given)}" if given else ""
    image = f"REGION-docker.pkg.dev/PROJECT/REPOSITORY/beamwright-{template_name.replace('_', '-')}:latest"
    spec_file = f"gs://BUCKET/templates/{template_name}.json"
    return [
        f"gcloud builds submit {out} --tag {image}",
        f"gcloud dataflow flex-template build {spec_file} --image {image} --sdk-language PYTHON "
        f"--metadata-file {out / 'metadata.json'}",
        f"gcloud dataflow flex-template run {template_name.replace('_', '-')}-$(date +%Y%m%d-%H%M%S) "
        f"--template-file-gcs-location {spec_file} --region REGION "
        f"--temp-location gs://BUCKET/tmp{parameters}",
    ]


def build(
    template_name: str, out: Path, streaming: bool | None = None
) -> tuple[Any, dict[str, Any]]:
    """Write the Flex Template files for ``template_name`` into ``out``; the template and its
    metadata."""
    import templates

    try:
        template = templates.get_template(template_name)
    except KeyError as exc:
        raise FlexError(str(exc.args[0]), where="TEMPLATE") from None
    meta = metadata(template, streaming)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out / "Dockerfile").write_text(dockerfile(template.name), encoding="utf-8")
    (out / "main.py").write_text(main_py(template.name), encoding="utf-8")
    copy_project(out / "project")
    return template, meta


def cmd_flex(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        template, meta = build(args.template, out, args.streaming)
    except BeamwrightError as exc:
        print(f"beamwright flex: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INVALID)
    mode = "streaming" if meta["streaming"] else "batch"
    print(
        f"wrote {out}/metadata.json ({len(meta['parameters'])} parameters, {mode}), "
        f"{out}/Dockerfile, {out}/main.py, {out}/project/"
    )
    print("then (replace REGION, PROJECT, REPOSITORY, BUCKET):")
    for command in gcloud_commands(template, out):
        print(f"  {command}")
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("flex", help="Dataflow Flex Templates: build one for a template")
    actions = p.add_subparsers(dest="flex_command", required=True)
    b = actions.add_parser(
        "build", help="write metadata.json, a launcher Dockerfile and main.py for a template"
    )
    b.add_argument("template", help="template name (see 'templates list')")
    b.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    mode = b.add_mutually_exclusive_group()
    mode.add_argument(
        "--streaming",
        dest="streaming",
        action="store_const",
        const=True,
        default=None,
        help="mark the template streaming (default: from its default expansion)",
    )
    mode.add_argument("--batch", dest="streaming", action="store_const", const=False)
    b.set_defaults(func=cmd_flex)
