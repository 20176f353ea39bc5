"""The README's local streaming example, as a user runs it: ``beamwright sample-stream`` (a
real broker process producing sample orders) and the README's ``orders_live`` spec read from
it; outputs per window, invalid orders in the dead letters."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipelines.dev.kafka_broker import free_port
from pipelines.dev.sample_stream import sample_orders
from pipelines.loading import parse_yaml, spec_from_data
from pipelines.run import run_spec
from tests.test_readme_examples import spec_examples

BIN = os.path.join(os.path.dirname(sys.executable), "beamwright")


def readme_spec(port: int, out: str) -> dict:
    data = next(parse_yaml(t) for t in spec_examples() if "name: orders_live" in t)
    data["sources"][0]["bootstrap_servers"] = f"127.0.0.1:{port}"
    for sink in data["sinks"]:
        sink["path"] = f"{out}/{sink['path']}"
    data["dead_letter"]["path"] = f"{out}/{data['dead_letter']['path']}"
    return data


def test_sample_orders_are_mostly_valid_with_some_invalid_and_some_late():
    orders = list(itertools.islice(sample_orders(7, bad_every=25, late_every=50), 100))
    assert sum(o["amount"] < 0 for o in orders) == 4
    assert len({o["order_id"] for o in orders}) == 100
    assert {"order_id", "customer_id", "country", "amount", "ts"} <= set(orders[0])


def read_until(process: subprocess.Popen, text: str, seconds: float = 60) -> None:
    """Read the command's output until a line holds ``text``; fail if it exits or is late."""
    deadline = time.monotonic() + seconds
    line = ""
    while text not in line:
        assert time.monotonic() < deadline and process.poll() is None, line
        line = process.stdout.readline()


def test_the_readme_streaming_example_reads_a_live_sample_stream(tmp_path):
    port = free_port()
    broker = subprocess.Popen(
        [BIN, "sample-stream", "--port", str(port), "--count", "200", "--rate", "1000"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        read_until(broker, "sent 200 orders")
        summary = run_spec(spec_from_data(readme_spec(port, str(tmp_path))))
        assert summary.rows_read == 200 and summary.rows_dead_lettered == 8  # every 25th
        rows = [
            json.loads(x) for p in (tmp_path / "out/revenue_per_minute").glob("*.jsonl") for x in p.open()
        ]
        assert sum(r["orders"] for r in rows) == 192
        assert {r["pane_timing"] for r in rows} == {"ON_TIME"}
    finally:
        broker.send_signal(signal.SIGINT)
        broker.wait(30)


def _started_with_sigint_ignored() -> None:
    """As a shell without job control starts a background command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sample_stream_stops_cleanly_even_started_with_sigint_ignored(sig):
    """It says "Ctrl-C stops": an inherited SIG_IGN (CI's background suite) must not make it
    run on; SIGTERM (service managers, docker stop) stops it the same clean way."""
    command = [BIN, "sample-stream", "--port", str(free_port()), "--count", "1"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, preexec_fn=_started_with_sigint_ignored
    )
    try:
        read_until(process, "keeps serving")
        process.send_signal(sig)
        assert process.wait(15) == 0
        assert "sent 1 orders" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
