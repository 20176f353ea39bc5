"""The ``file`` source: files matching a glob (JSONL, CSV, Parquet, Avro) read into Arrow
batches, each row with its file and line; undecodable records go to the dead letters.

Known fields (for ``validate`` without running): the header fields of local CSV, Parquet and
Avro files, read from their first rows; a glob's files must agree. A JSONL line says nothing
about the next one, so JSONL fields are unknown.
"""

from __future__ import annotations

import glob
import itertools
from typing import Any, Literal

from pydantic import Field

from pipelines.registry import Kind
from pipelines.spec_base import Name, SpecModel

HEADER_FORMATS = ("csv", "parquet", "avro")
"""Formats whose field names the first rows of each file fix for the whole file."""

MAX_FILES_READ = 100
"""A glob matching more files than this is left unknown rather than opening them all."""


class FileSourceSpec(SpecModel):
    """Files matching a glob pattern, decoded straight into Arrow batches."""

    type: Literal["file"]
    name: Name
    path: str = Field(description="File path or glob pattern (local, gs://, s3://, ...).")
    format: Literal[
        "jsonl", "csv", "parquet", "avro", "yahoo_csv", "alpha_vantage_json", "bloomberg_dl"
    ] | None = Field(
        default=None, description="Inferred from the file extension when omitted."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Format options, e.g. {delimiter: ';'} for CSV."
    )
    allow_empty: bool = Field(
        default=False, description="Succeed when the pattern matches no file."
    )


def build(node: FileSourceSpec, ctx: Any, path: str) -> None:
    from connectors.committer import make_dirs
    from connectors.fileio import ReadFiles, match_files, plan_reads
    from connectors.files.base import CorruptFileError, is_remote
    from connectors.files.registry import infer_format, make_format

    try:
        make_format(node.format or "jsonl", **node.options)
    except (ValueError, TypeError) as exc:
        raise ctx.fail(f"{path}.options", str(exc)) from None
    files = match_files(node.path)
    if not files and not node.allow_empty:
        raise ctx.fail(
            f"{path}.path",
            f"no file matches '{node.path}'; check the path, or set allow_empty: true",
        )
    if node.format is None:
        for f in files:
            try:
                infer_format(f)
            except ValueError as exc:
                raise ctx.fail(f"{path}.format", f"{exc}; set 'format' explicitly") from None
    try:
        tasks = plan_reads(node.path, node.format, node.options)
    except CorruptFileError as exc:
        raise ctx.fail(f"{path}.path", str(exc)) from None
    outputs = ctx.pipeline | node.name >> ReadFiles(
        tasks,
        source_name=node.name,
        format_name=node.format,
        options=node.options,
        batch_size=ctx.spec.run.batch_size,
        run_id=ctx.run_id,
    )
    ctx.outputs[node.name] = outputs.rows
    ctx.dead_letters.append(outputs.dead_letters)
    if ctx.spec.lineage.enabled:
        from transforms.profile import WriteProfile

        folder = ctx.spec.run.profile_dir(ctx.run_id)
        if not is_remote(folder):  # object stores have no directories: nothing to ask them
            make_dirs(folder)
        outputs.rows | f"{node.name}/Profile" >> WriteProfile(folder, node.name)
    fmt = node.format or (infer_format(files[0]) if files else "jsonl")
    ctx.inputs.append(ctx.dataset(node.name, "source", node.path, fmt, files))


def known_fields(node: FileSourceSpec) -> list[str] | None:
    """The field names every matching local file has in its header, else None."""
    from connectors.files.base import is_remote
    from connectors.files.registry import head_schema, infer_format

    if is_remote(node.path):
        return None
    files = sorted(itertools.islice(glob.iglob(node.path), MAX_FILES_READ + 1))
    if not files or len(files) > MAX_FILES_READ:
        return None
    try:
        fmt = node.format or infer_format(files[0])
    except ValueError:
        return None
    if fmt not in HEADER_FORMATS:
        return None
    names: list[str] | None = None
    for path in files:
        schema = head_schema(path, fmt, node.options)
        if schema is None:
            return None
        names = [n for n in schema.names if names is None or n in names]
    return names


def paths(node: FileSourceSpec) -> list[tuple[str, str, bool]]:
    return [("path", node.path, False)]


def origins(node: FileSourceSpec, dataset: Any, path: str) -> tuple[dict, dict]:
    from connectors.originals import file_origins

    return file_origins(dataset.files, node.format, node.options), {}


KIND = Kind(
    "source", FileSourceSpec, build, known_fields=known_fields, paths=paths, origins=origins
)
