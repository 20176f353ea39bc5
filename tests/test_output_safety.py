"""No run destroys or loses data: sinks own their output and publish only on success.

Each test here failed on the code before output committers existed (overwrite deleted every
``part-*`` file of its directory, two sinks could share a path, a failed run had already
replaced the good output, a crash left staging behind for ever). Outputs are compared by
checksum before and after, so "unchanged" means byte for byte.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline

from connectors.committer import FAILED_PREFIX, LOCK, MANIFEST, STAGING_PREFIX
from connectors.fileio import WriteFiles
from pipelines.loading import SpecError, spec_from_data
from pipelines.run import RunFailed, run_spec

ROOT = Path(__file__).resolve().parents[1]
ROWS = 300
BAD_EVERY = 10  # every 10th order has a negative amount: 30 dead letters


def _orders(path: Path, n: int = ROWS, *, first: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in range(first, first + n):
            amount = -1.0 if i % BAD_EVERY == 0 else float(i)
            f.write(json.dumps({"id": i, "amount": amount, "status": "paid"}) + "\n")


def _spec(tmp: Path, *, threshold: float = 0.2, **overrides) -> dict:
    spec = {
        "name": "safety",
        "run": {"error_threshold": threshold},
        "lineage": {"enabled": False},
        "sources": [{"type": "file", "name": "orders", "path": str(tmp / "in" / "*.jsonl")}],
        "steps": [
            {
                "type": "validate",
                "name": "check",
                "fields": {"id": {"type": "int64"}, "amount": {"type": "float64"}},
                "rules": [{"rule": "min", "field": "amount", "min": 0}],
            }
        ],
        "sinks": [
            {"type": "file", "name": "lake", "path": str(tmp / "out" / "lake"), "format": "parquet"},
            {
                "type": "report",
                "name": "totals",
                "path": str(tmp / "out" / "totals.json"),
                "group_by": ["status"],
                "metrics": {"rows": "count"},
            },
        ],
        "dead_letter": {"path": str(tmp / "out" / "dead")},
    }
    spec.update(overrides)
    return spec


def _checksums(root: Path) -> dict[str, str]:
    """Every file under ``root`` (lock files aside, which hold no data) -> sha256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def _good_outputs(checksums: dict[str, str]) -> dict[str, str]:
    """The checksums of every output but the dead letters (a failed run adds its own)."""
    return {name: digest for name, digest in checksums.items() if not name.startswith("dead/")}


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``beamwright ARGS`` in a separate process (text output)."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
    )


def _rows(directory: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in directory.glob("part-*.parquet"))


def _corrupt_avro(path: Path) -> None:
    import fastavro

    path.parent.mkdir(parents=True)
    schema = {"type": "record", "name": "o", "fields": [{"name": "id", "type": "long"}]}
    with path.open("wb") as f:
        fastavro.writer(f, schema, ({"id": i} for i in range(5000)), codec="deflate")
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))


def _load(data: dict):
    return spec_from_data(data, origin="test")


# --------------------------------------------------------------------------- ownership


def test_overwrite_refuses_a_directory_with_files_it_does_not_own(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    lake = tmp_path / "out" / "lake"
    lake.mkdir(parents=True)
    (lake / "part-2025-archive.parquet").write_bytes(b"last year's data")
    (lake / "notes.txt").write_text("keep me")
    before = _checksums(lake)
    with pytest.raises(SpecError) as info:
        run_spec(_load(_spec(tmp_path)))
    message = str(info.value)
    assert "sinks[0].path" in message and "part-2025-archive.parquet" in message
    assert "force: true" in message  # the hint
    assert _checksums(lake) == before
    # nothing ran: no other output appeared either
    assert not (tmp_path / "out" / "totals.json").exists()


def test_force_writes_beside_foreign_files_and_never_deletes_them(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    lake = tmp_path / "out" / "lake"
    lake.mkdir(parents=True)
    (lake / "part-2025-archive.parquet").write_bytes(b"last year's data")
    data = _spec(tmp_path)
    data["sinks"][0]["force"] = True
    for _ in range(2):  # the second overwrite replaces only what the first published
        run_spec(_load(data))
    assert (lake / "part-2025-archive.parquet").read_bytes() == b"last year's data"
    manifest = json.loads((lake / MANIFEST).read_text())
    assert manifest["files"] == ["part-00000-of-00001.parquet"]
    assert manifest["pipeline"] == "safety" and manifest["sink"] == "lake"
    assert pq.read_table(lake / "part-00000-of-00001.parquet").num_rows == ROWS - ROWS // BAD_EVERY


def test_overwrite_replaces_exactly_its_own_previous_files(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    run_spec(_load(data))
    lake = tmp_path / "out" / "lake"
    first = json.loads((lake / MANIFEST).read_text())
    _orders(tmp_path / "in" / "b.jsonl", first=ROWS)  # twice the data next time
    data["run"]["batch_size"] = 100
    run_spec(_load(data))
    second = json.loads((lake / MANIFEST).read_text())
    assert second["run_id"] != first["run_id"]
    on_disk = sorted(p.name for p in lake.glob("part-*"))
    assert on_disk == sorted(second["files"])
    assert _rows(lake) == 2 * (ROWS - ROWS // BAD_EVERY)


def test_another_sinks_directory_is_refused_unless_forced(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    run_spec(_load(_spec(tmp_path)))
    lake = tmp_path / "out" / "lake"
    before = _checksums(lake)
    other = _spec(tmp_path, name="other_pipeline")
    other["sinks"] = [other["sinks"][0]]
    other["dead_letter"] = {"path": str(tmp_path / "out" / "dead2")}
    with pytest.raises(SpecError, match="owned by sink 'lake' of pipeline 'safety'"):
        run_spec(_load(other))
    assert _checksums(lake) == before


def test_error_if_exists_refuses_before_anything_runs(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    run_spec(_load(data))
    data["sinks"][0]["mode"] = "error_if_exists"
    with pytest.raises(SpecError, match="already holds 1 file"):
        run_spec(_load(data))


def test_a_report_never_replaces_a_file_it_did_not_write(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    report = tmp_path / "out" / "totals.json"
    report.parent.mkdir(parents=True)
    report.write_text("hand-made, precious")
    with pytest.raises(SpecError, match="was not written by this sink"):
        run_spec(_load(data))
    assert report.read_text() == "hand-made, precious"
    report.unlink()
    run_spec(_load(data))
    run_spec(_load(data))  # its own report: replaced
    assert json.loads(report.read_text()) == [{"status": "paid", "rows": ROWS - ROWS // BAD_EVERY}]
    report.write_text("edited by someone since")
    with pytest.raises(SpecError, match="or was changed since"):
        run_spec(_load(data))
    assert report.read_text() == "edited by someone since"


# --------------------------------------------------------------------------- overlaps


def _problem(data: dict) -> str:
    with pytest.raises(SpecError) as info:
        _load(data)
    return str(info.value)


def test_a_sink_inside_its_own_input_glob_is_refused_at_validation(tmp_path):
    data = _spec(tmp_path)
    data["sources"][0]["path"] = str(tmp_path / "data" / "part-*.jsonl")
    data["sinks"][0]["path"] = str(tmp_path / "data")
    message = _problem(data)
    assert "sinks[0].path" in message and "inside the input" in message
    # a relative spelling of the same directory is the same directory
    data["sources"][0]["path"] = "data/part-*.jsonl"
    data["sinks"][0]["path"] = "./data/"
    assert "inside the input" in _problem(data)
    # recursive globs reach any depth; a plain file path too
    data["sources"][0]["path"] = str(tmp_path / "**" / "*.jsonl")
    data["sinks"][0]["path"] = str(tmp_path / "x" / "y")
    assert "inside the input" in _problem(data)
    data["sources"][0]["path"] = str(tmp_path / "out" / "totals.json")
    data["sinks"][0]["path"] = str(tmp_path / "lake")
    assert "sinks[1].path" in _problem(data)  # the report would overwrite its input


def test_outputs_sharing_or_nesting_paths_are_refused(tmp_path):
    same = _spec(tmp_path)
    same["sinks"][1] = dict(same["sinks"][0], name="lake2")
    assert "same path as sink 'lake'" in _problem(same)
    dead = _spec(tmp_path)
    dead["dead_letter"]["path"] = dead["sinks"][0]["path"]
    assert "dead_letter.path" in _problem(dead)
    nested = _spec(tmp_path)
    nested["dead_letter"]["path"] = str(tmp_path / "out" / "lake" / "dead")
    assert "is inside the output of sink 'lake'" in _problem(nested)
    report_in_dir = _spec(tmp_path)
    report_in_dir["sinks"][1]["path"] = str(tmp_path / "out" / "lake" / "r.json")
    assert "inside the output" in _problem(report_in_dir)


def test_disjoint_paths_are_accepted(tmp_path):
    data = _spec(tmp_path)
    data["sources"][0]["path"] = str(tmp_path / "data" / "*.jsonl")
    data["sinks"][0]["path"] = str(tmp_path / "data" / "curated")  # below, but not globbed
    _load(data)


def test_validate_command_reports_the_overlap_with_exit_2(tmp_path):
    data = _spec(tmp_path)
    data["sinks"][0]["path"] = str(tmp_path / "in")
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    done = _cli(tmp_path, "validate", str(spec_file))
    assert done.returncode == 2
    assert "inside the input" in done.stderr and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- failed runs


def test_a_run_failing_the_threshold_leaves_every_output_as_it_was(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    run_spec(_load(data))
    out = tmp_path / "out"
    before = _checksums(out)
    dead_before = set((out / "dead").glob("part-*"))
    _orders(tmp_path / "in" / "a.jsonl", first=1000)  # new data, same shape
    with pytest.raises(RunFailed) as info:
        run_spec(_load(_spec(tmp_path, threshold=0.05)))  # 10% rejected > 5%
    summary = info.value.summary
    assert summary.status == "FAILED" and not summary.published
    after = _checksums(out)
    # the good outputs are byte-identical; the failed run's dead letters were added beside
    assert _good_outputs(after) == _good_outputs(before)
    for name, digest in before.items():
        if name.startswith("dead/part-"):
            assert after[name] == digest
    new_dead = set((out / "dead").glob("part-*")) - dead_before
    assert len(new_dead) == 1
    assert sum(1 for _ in next(iter(new_dead)).open()) == ROWS // BAD_EVERY
    assert summary.failed_dead_letters == str(out / "dead")
    assert not list(out.rglob(f"{STAGING_PREFIX}*"))  # staging cleaned at once


def test_overwrite_mode_dead_letters_of_a_failed_run_are_kept_beside(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    data["dead_letter"]["mode"] = "overwrite"
    run_spec(_load(data))
    dead = tmp_path / "out" / "dead"
    before = _checksums(dead)
    data["run"]["error_threshold"] = 0.01
    with pytest.raises(RunFailed) as info:
        run_spec(_load(data))
    kept = Path(info.value.summary.failed_dead_letters)
    assert kept.parent == dead and kept.name.startswith(FAILED_PREFIX)
    assert {k: v for k, v in _checksums(dead).items() if not k.startswith(kept.name)} == before
    assert sum(1 for f in kept.glob("*.jsonl") for _ in f.open()) == ROWS // BAD_EVERY
    data["run"]["error_threshold"] = 0.2  # the next good run keeps the failed run's letters
    run_spec(_load(data))
    assert kept.exists()


def test_a_run_that_raises_publishes_nothing_and_says_how_far_it_got(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    run_spec(_load(data))
    out = tmp_path / "out"
    before = _checksums(out)
    # a second input whose Avro data block is corrupt: the header is fine, so the run
    # starts, and the pipeline raises when a worker reaches the broken block
    _corrupt_avro(tmp_path / "in2" / "more.avro")
    data["sources"].append({"type": "file", "name": "more", "path": str(tmp_path / "in2" / "*")})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    done = _cli(tmp_path, "run", str(spec_file), COLUMNS="200")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "rows seen before the failure" in done.stdout
    assert "not published: the previous output is unchanged" in done.stdout
    assert str(out / "lake") in done.stdout
    after = _checksums(out)
    assert _good_outputs(after) == _good_outputs(before)
    assert not list(out.rglob(f"{STAGING_PREFIX}*"))


def test_orphaned_staging_of_a_dead_run_is_removed_by_the_next_run(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    run_spec(_load(data))
    lake = tmp_path / "out" / "lake"
    orphan = lake / f"{STAGING_PREFIX}0190-dead-run-0123456789ab"
    orphan.mkdir()
    (orphan / "half-written.parquet").write_bytes(b"PAR1 trunc")
    report_orphan = tmp_path / "out" / f"{STAGING_PREFIX}totals.json-0190-dead-0123456789ab"
    report_orphan.mkdir()
    run_spec(_load(data))
    assert not orphan.exists() and not report_orphan.exists()


def test_a_second_writer_is_refused_while_the_first_holds_the_directory(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl")
    lake = tmp_path / "out" / "lake"
    lake.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, sys, time
                fd = os.open({str(lake / LOCK)!r}, os.O_RDWR | os.O_CREAT)
                fcntl.flock(fd, fcntl.LOCK_EX)
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpecError, match="another run is writing to"):
            run_spec(_load(_spec(tmp_path)))
    finally:
        holder.kill()
        holder.wait()
    # no lock left behind by the refused run: the next one goes through
    run_spec(_load(_spec(tmp_path)))
    fd = os.open(lake / LOCK, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released after publish
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- streaming defaults


def _kafka_spec(tmp_path: Path, **sink) -> dict:
    data = _spec(tmp_path)
    data["sources"] = [
        {
            "type": "kafka",
            "name": "orders",
            "bootstrap_servers": "127.0.0.1:1",
            "topics": "orders",
            "group_id": "g",
        }
    ]
    data["sinks"] = [dict(data["sinks"][0], **sink)]
    return data


def test_with_a_kafka_source_file_sinks_append_and_overwrite_is_refused(tmp_path):
    spec = _load(_kafka_spec(tmp_path))
    assert spec.sinks[0].mode == "append"
    message = _problem(_kafka_spec(tmp_path, mode="overwrite"))
    assert "sinks[0].mode" in message and "use mode: append" in message
    assert _load(_spec(tmp_path)).sinks[0].mode == "overwrite"  # files only: unchanged


# --------------------------------------------------------------------------- positions


def _stored_offsets(part: Path, fmt: str) -> list[int]:
    """The ``_bw_offset`` values as stored, read with each format's own library."""
    import csv

    import fastavro

    if fmt == "parquet":
        return pq.read_table(part).column("_bw_offset").to_pylist()
    if fmt == "avro":
        with part.open("rb") as f:
            return [r["_bw_offset"] for r in fastavro.reader(f)]
    if fmt == "jsonl":
        return [json.loads(line)["_bw_offset"] for line in part.open()]
    with part.open(newline="") as f:
        return [int(r["_bw_offset"]) for r in csv.DictReader(f)]


@pytest.mark.parametrize("fmt", ["parquet", "avro", "jsonl", "csv"])
def test_sinks_can_keep_source_positions_for_downstream_dedup(tmp_path, fmt):
    _orders(tmp_path / "in" / "a.jsonl", 40)
    data = _spec(tmp_path)
    data["sinks"] = [dict(data["sinks"][0], format=fmt, keep_positions=True)]
    run_spec(_load(data))
    (part,) = (tmp_path / "out" / "lake").glob("part-*")
    assert sorted(_stored_offsets(part, fmt)) == [i + 1 for i in range(40) if i % BAD_EVERY]


def test_kept_positions_are_the_input_positions(tmp_path):
    _orders(tmp_path / "in" / "a.jsonl", 40)
    data = _spec(tmp_path)
    data["sinks"] = [dict(data["sinks"][0], keep_positions=True)]
    run_spec(_load(data))
    (part,) = (tmp_path / "out" / "lake").glob("part-*.parquet")
    table = pq.read_table(part)
    ids, offsets = table.column("id").to_pylist(), table.column("_bw_offset").to_pylist()
    rows = sorted(zip(ids, offsets, strict=True))
    assert rows == [(i, i + 1) for i in range(40) if i % BAD_EVERY]  # line = id + 1
    assert set(table.column("_bw_source").to_pylist()) == {str(tmp_path / "in" / "a.jsonl")}
    default = _spec(tmp_path)
    run_spec(_load(default))
    (part,) = (tmp_path / "out" / "lake").glob("part-*.parquet")
    assert "_bw_offset" not in pq.read_schema(part).names  # off by default


# --------------------------------------------------------------------------- standalone


def test_write_files_used_in_a_plain_beam_pipeline_publishes_with_a_manifest(tmp_path):
    table = pa.table({"x": list(range(10))})
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create([table]) | WriteFiles(str(tmp_path / "out"), sink_name="plain")
    out = tmp_path / "out"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["files"] == ["part-00000-of-00001.parquet"]
    assert pq.read_table(out / manifest["files"][0]).column("x").to_pylist() == list(range(10))
    assert not list(out.glob(f"{STAGING_PREFIX}*"))


# --------------------------------------------------------------------------- crashes

CRASH_POINTS = [
    "stage:listed",  # the pipeline staged everything; publish never started
    "publish:before-journal",
    "publish:journaled",  # the commit point passed: the next claim must roll forward
    "publish:renamed-one",
    "publish:deleted",
    "publish:manifest",
]


@pytest.mark.slow
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_every_publish_step_leaves_old_or_new_output_whole(tmp_path, point):
    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    data["run"]["batch_size"] = 100  # several files, so renames happen one by one
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    run_spec(_load(data))  # the previous good output
    lake = tmp_path / "out" / "lake"
    good = _checksums(lake)
    good_rows = _rows(lake)
    _orders(tmp_path / "in" / "b.jsonl", first=ROWS)  # the killed run has twice the rows
    killed = _cli(tmp_path, "run", str(spec_file), BEAMWRIGHT_FAILPOINT=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    journaled = (lake / (MANIFEST + ".pending")).exists()
    if point in ("stage:listed", "publish:before-journal"):
        assert not journaled
        visible = {k: v for k, v in _checksums(lake).items() if not k.startswith(STAGING_PREFIX)}
        assert visible == good  # readers still see the previous output, byte for byte
    # the next run first recovers (rolls forward or cleans up), then writes afresh
    run_spec(_load(data))
    manifest = json.loads((lake / MANIFEST).read_text())
    assert sorted(p.name for p in lake.glob("part-*")) == sorted(manifest["files"])
    assert _rows(lake) == 2 * good_rows
    assert not list(lake.glob(f"{STAGING_PREFIX}*"))
    assert not (lake / (MANIFEST + ".pending")).exists()


@pytest.mark.slow
def test_a_journaled_publish_is_rolled_forward_by_the_next_claim(tmp_path):
    """After the commit point the killed run's output is the output, even before a re-run."""
    from connectors.committer import OutputCommitter, OutputTarget

    _orders(tmp_path / "in" / "a.jsonl")
    data = _spec(tmp_path)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(data))
    lake = tmp_path / "out" / "lake"
    killed = _cli(tmp_path, "run", str(spec_file), BEAMWRIGHT_FAILPOINT="publish:journaled")
    assert killed.returncode == -9
    assert not list(lake.glob("part-*"))
    target = OutputTarget(str(lake), "safety", "lake", "overwrite", "r", "w", ".parquet")
    committer = OutputCommitter(target)
    committer.claim()
    committer.release()
    assert _rows(lake) == ROWS - ROWS // BAD_EVERY
    assert json.loads((lake / MANIFEST).read_text())["pipeline"] == "safety"
