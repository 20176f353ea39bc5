"""The ``file`` sink: a directory of ``part-NNNNN-of-MMMMM`` files the sink owns, staged during
the run and published by the driver once the run's checks passed (:mod:`connectors.committer`).
On unbounded input: a directory per window, each pane's files published as the pane fires
(:mod:`connectors.panes`). ``window`` gives every fixed event-time window a directory of its
own on any input, ``shards`` a fixed number of files per window (Nexmark's query 10).
Column lineage: the rows as they arrive (a pass-through).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pipelines.registry import Kind
from pipelines.spec_base import SinkBase, SpecModel


class FileWindowSpec(SpecModel):
    """One directory of files per fixed event-time window, on bounded and unbounded input."""

    event_time: str = Field(
        description="Timestamp, date or epoch-millis field; rows without one are dead letters."
    )
    size: float = Field(gt=0, description="Window length in seconds.")
    offset: float = Field(default=0.0, ge=0, description="Seconds the windows are shifted by.")


class FileSinkSpec(SinkBase):
    """A directory of sharded files: ``part-00000-of-00002.parquet`` and so on."""

    type: Literal["file"]
    path: str = Field(description="Output directory (local, gs://, ...); the sink owns it.")
    format: Literal["jsonl", "csv", "parquet", "avro"] = "parquet"
    options: dict[str, Any] = Field(default_factory=dict)
    mode: Literal["overwrite", "append", "error_if_exists"] | None = Field(
        default=None,
        description="overwrite: replace this sink's own earlier files (listed in its manifest; "
        "never files it did not write); append: add files; error_if_exists: refuse a "
        "non-empty directory. Default: overwrite, or append when a source can be unbounded "
        "(Kafka), where overwrite is refused.",
    )
    force: bool = Field(
        default=False,
        description="Write into a directory that holds files this sink does not own (or that "
        "another sink owns); those files are kept, never deleted.",
    )
    keep_positions: bool = Field(
        default=False,
        description="Keep the source position columns _bw_source/_bw_offset in the output, so "
        "downstream readers can deduplicate at-least-once deliveries.",
    )
    window: FileWindowSpec | None = Field(
        default=None,
        description="Write each fixed event-time window's rows to a directory of its own, "
        "<start>_<end>/part-...; the sink's manifest lists every window's files (on unbounded "
        "input each window directory has its own). A row arriving after its window still goes "
        "there, never dropped as late.",
    )
    shards: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Exactly this many files per window (per run without window; per pane on "
        "unbounded input), part-00003-of-00025: row i of the rows in a fixed order (by source "
        "position) goes to file i mod shards. Files that would be empty are not written. "
        "Without window all rows meet on one worker.",
    )


def build(node: FileSinkSpec, ctx: Any, path: str, rows: Any) -> None:
    from connectors.fileio import WriteFiles

    window_size = None
    if node.window is not None:
        from transforms.time_buckets import EventTimeBuckets

        window_size = round(node.window.size * 1_000_000)
        windowed = rows | f"{node.name}/Windows" >> EventTimeBuckets(
            node.window.event_time,
            window_size,
            round(node.window.offset * 1_000_000),
            sink=node.name,
            run_id=ctx.run_id,
        )
        ctx.dead_letters.append(windowed.dead_letters)
        rows = windowed.rows
    try:
        write = WriteFiles(
            node.path,
            sink_name=node.name,
            format_name=node.format,
            options=node.options,
            mode=node.mode or "overwrite",
            run_id=ctx.run_id,
            pipeline_name=ctx.spec.name,
            force=node.force,
            keep_positions=node.keep_positions,
            publish=False,
            where=f"{path}.path",
            triggering_frequency=ctx.spec.run.triggering_frequency,
            shards=node.shards,
            window_size=window_size,
        )
    except (ValueError, TypeError) as exc:
        raise ctx.fail(f"{path}.options", str(exc)) from None
    dataset = ctx.dataset(node.name, "sink", node.path, node.format)
    staged = ctx.own_output(dataset, write.target, f"{path}.path")
    staged.done = rows | node.name >> write
    ctx.datasets_out.append(dataset)


def paths(node: FileSinkSpec) -> list[tuple[str, str, bool]]:
    return [("path", node.path, False)]


def settle(node: FileSinkSpec, path: str, spec: Any) -> None:
    """Default to overwrite, or to append when a source can be unbounded: there an overwrite
    would erase the rows of earlier cycles whose offsets are already committed."""
    from pipelines.spec import unbounded_sources

    streaming = unbounded_sources(spec)
    if node.mode is None:
        node.mode = "append" if streaming else "overwrite"
    elif node.mode == "overwrite" and streaming:
        raise ValueError(
            f"{path}.mode: overwrite would erase the rows of earlier runs or --follow cycles, "
            f"whose source offsets ({', '.join(streaming)}) are already committed; use "
            "mode: append (the default with a Kafka source)"
        )


KIND = Kind("sink", FileSinkSpec, build, paths=paths, settle=settle)
