"""Crash safety: SIGKILL a pipeline reading Kafka mid-run, run it again, lose nothing.

Two pipelines, each run in a subprocess by this module's ``__main__`` and killed while writing:

- Kafka -> Parquet with ``commit="manual"``: offsets are committed by the driver after the run
  succeeded (what local runs with file sinks need, see ``connectors.kafka.source``). The killed
  run commits nothing and leaves no final file; the re-run writes exactly one copy of each
  message.
- Kafka -> Kafka with ``commit="bundle"``: offsets are committed in bundle finalization, after
  the sink flushed in the same fused stage. The re-run starts from the committed offsets; every
  input position reaches the output topic, and the only duplicates are positions that were
  not committed when the first run died.
"""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.kafka_broker import consume_all, produce, unique_group

# pytest fixtures, taken by name


ROOT = Path(__file__).resolve().parents[1]
MESSAGES = 200_000


def _values(n: int) -> list[bytes]:
    return [b'{"id":%d,"name":"n%d"}' % (i, i) for i in range(n)]


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.test_kafka_crash", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _kill_when(process: subprocess.Popen, ready, timeout_s: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None:
            raise AssertionError(
                f"the pipeline ended before it was killed:\n{process.stdout.read().decode()}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the pipeline never got to the point to kill it at")
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _finish(process: subprocess.Popen) -> None:
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == 0, output


def _committed(bootstrap: str, group: str, name: str) -> dict[int, int]:
    from connectors.kafka import committed_offsets

    return {
        int(k.rsplit("/", 1)[1]): v for k, v in committed_offsets(bootstrap, group, name).items()
    }


@pytest.mark.slow
def test_kill_mid_run_then_rerun_writes_each_message_once_to_parquet(kafka_broker, topic, tmp_path):
    bootstrap, name, group = kafka_broker.bootstrap_servers, topic(), unique_group()
    produce(bootstrap, name, _values(MESSAGES))
    out = tmp_path / "out"

    first = _start("parquet", bootstrap, name, group, str(out))
    _kill_when(first, lambda: glob.glob(str(out / ".beamwright-tmp-*" / "*.parquet")))
    assert _committed(bootstrap, group, name) == {}
    assert not glob.glob(str(out / "part-*"))

    _finish(_start("parquet", bootstrap, name, group, str(out)))
    ids = [
        i
        for f in sorted(glob.glob(str(out / "part-*.parquet")))
        for i in pq.read_table(f).column("id").to_pylist()
    ]
    assert len(ids) == MESSAGES and set(ids) == set(range(MESSAGES))
    assert _committed(bootstrap, group, name) == {p: MESSAGES // 4 for p in range(4)}


@pytest.mark.slow
def test_kill_mid_run_then_rerun_loses_nothing_kafka_to_kafka(kafka_broker, topic):
    bootstrap, name, group, out = kafka_broker.bootstrap_servers, topic(), unique_group(), topic()
    produce(bootstrap, name, _values(MESSAGES))
    watcher = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": unique_group(), "enable.auto.commit": False}
    )
    watcher.assign([TopicPartition(out, p, 0) for p in range(4)])
    try:
        first = _start("kafka", bootstrap, name, group, out, "run-1")
        _kill_when(first, lambda: any(m.error() is None for m in watcher.consume(100, 0.05)))
    finally:
        watcher.close()
    committed = _committed(bootstrap, group, name)

    _finish(_start("kafka", bootstrap, name, group, out, "run-2"))
    records = consume_all(bootstrap, out)
    by_run: dict[bytes, list[tuple[bytes, int]]] = {}
    for r in records:
        position = (r.headers["_bw_source"], int(r.headers["_bw_offset"]))
        by_run.setdefault(r.headers["_bw_run_id"], []).append(position)
    everything = {(f"{name}/{p}".encode(), o) for p in range(4) for o in range(MESSAGES // 4)}
    first_run, second_run = set(by_run.get(b"run-1", [])), set(by_run[b"run-2"])
    assert first_run and first_run | second_run == everything  # killed mid-write; nothing lost
    assert len(by_run[b"run-2"]) == len(second_run)  # no duplicates within a run
    duplicates = first_run & second_run
    uncommitted = {
        (s, o) for s, o in everything if o >= committed.get(int(s.rsplit(b"/", 1)[1]), 0)
    }
    assert duplicates <= uncommitted  # only what the killed run had not committed is written twice
    assert _committed(bootstrap, group, name) == {p: MESSAGES // 4 for p in range(4)}


def _main(mode: str, bootstrap: str, name: str, group: str, target: str, run_id: str = "") -> None:
    """One pipeline run (the subprocess the tests kill)."""
    import apache_beam as beam

    from connectors.fileio import WriteFiles
    from connectors.kafka import ReadKafka, WriteKafka, commit_offsets, consumed_offsets

    pipeline = beam.Pipeline(runner="FnApiRunner")
    commit = "manual" if mode == "parquet" else "bundle"
    read = pipeline | ReadKafka(
        bootstrap, name, source_name="in", group_id=group, batch_size=2000, commit=commit
    )
    if mode == "parquet":
        read.rows | WriteFiles(target, sink_name="out", format_name="parquet")
    else:
        read.rows | WriteKafka(
            bootstrap, target, sink_name="out", run_id=run_id, max_pending_rows=5000
        )
    result = pipeline.run()
    result.wait_until_finish()
    if mode == "parquet":
        commit_offsets(bootstrap, group, consumed_offsets(result, "in"))


if __name__ == "__main__":
    _main(*sys.argv[1:])
