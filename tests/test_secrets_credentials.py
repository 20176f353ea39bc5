"""The consumer side: refresh limits, last-known-good, fallback to previous, reports, side inputs."""

from __future__ import annotations

import pickle
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from connectors.secrets import FileSecret, Secret
from connectors.secrets.model import StageView
from connectors.secrets.registry import open_store
from connectors.secrets.reporting import InboxReporter, read_inbox
from tests.servers.gsm import FakeSecretManager
from transforms.credentials import (
    ACCESSES,
    AuthenticationFailed,
    Credentials,
    CredentialUnavailable,
    ReadSecretVersions,
    side_input,
)


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seeded(tmp_path: Path, name: str, *values: bytes) -> tuple[dict[str, Any], list[str]]:
    """A file store where ``values`` were promoted in turn; their version ids."""
    config = {"type": "file", "path": str(tmp_path / "store")}
    store = open_store(config)
    versions: list[str] = []
    for value in values:
        version = store.add_version(name, Secret(value))
        store.promote(name, version, expect_current=versions[-1] if versions else None)
        versions.append(version)
    return config, versions


def test_helper_pickles_without_values(tmp_path: Path) -> None:
    name = fresh("pickled")
    config, _ = seeded(tmp_path, name, b"value-one-111")
    creds = Credentials(config, name, refresh_interval=10)
    assert creds.current().secret.reveal() == b"value-one-111"
    blob = pickle.dumps(creds)
    assert b"value-one-111" not in blob
    assert pickle.loads(blob).current().secret.reveal() == b"value-one-111"


def test_at_most_one_access_per_interval_across_threads(tmp_path: Path) -> None:
    name = fresh("hammered")
    config, _ = seeded(tmp_path, name, b"value-two-222")
    interval = 0.1
    stop = time.monotonic() + 1.0
    wrong: list[Any] = []

    def hammer() -> None:
        creds = Credentials(config, name, refresh_interval=interval)  # one per DoFn instance
        while time.monotonic() < stop:
            try:
                if creds.current().secret.reveal() != b"value-two-222":
                    wrong.append("value")
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                wrong.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    times = ACCESSES.times(name)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert 5 <= len(times) <= 11 and min(gaps) >= interval


def test_falls_back_to_previous_and_reports_once(tmp_path: Path) -> None:
    name = fresh("fallback")
    config, versions = seeded(tmp_path, name, b"old-token-aaa")
    inbox = tmp_path / "inbox.jsonl"
    key = FileSecret(str(tmp_path / "report.key"))
    key.create_if_missing()
    creds = Credentials(
        config, name, refresh_interval=0.05, reporter=InboxReporter(str(inbox), key), auth_wait=1
    )
    assert creds.current().version == versions[0]
    store = open_store(config)
    new = store.add_version(name, Secret(b"new-token-bbb"))
    store.promote(name, new, expect_current=versions[0])
    time.sleep(0.06)
    accepted = {b"old-token-aaa"}  # the protected system has not learnt the new token yet

    def call(secret: Secret) -> str:
        if secret.reveal() not in accepted:
            raise AuthenticationFailed("HTTP 401 for Bearer " + secret.reveal().decode())
        return secret.reveal().decode()

    assert creds.call(call) == "old-token-aaa"  # current rejected, previous works
    assert creds.call(call) == "old-token-aaa"  # sticks to previous, no second report
    reports, _ = read_inbox(inbox, 0)
    assert [(r.version, r.secret) for r in reports] == [(new, name)]
    assert reports[0].authentic(key.resolve().reveal())
    assert "new-token-bbb" not in inbox.read_text() and "[redacted]" in reports[0].detail

    accepted = set()  # now nothing works: retries until auth_wait, then gives up
    started = time.monotonic()
    with pytest.raises(AuthenticationFailed, match="every known version was rejected"):
        creds.call(call)
    assert 0.9 <= time.monotonic() - started < 2


def test_keeps_last_known_good_when_the_store_is_gone(gsm: FakeSecretManager) -> None:
    name = fresh("lkg")
    config = {"type": "gcp", "project": "p", "emulator_host": gsm.address, "timeout": 1}
    store = open_store(config)
    store.ensure(name)
    store.promote(name, store.add_version(name, Secret(b"survivor")), expect_current=None)
    creds = Credentials(config, name, refresh_interval=0.05)
    assert creds.current().secret.reveal() == b"survivor"
    gsm.stop()
    time.sleep(0.06)
    assert creds.current().secret.reveal() == b"survivor"  # refresh failed, value kept
    gsm.start()

    never_read = Credentials(
        {"type": "gcp", "project": "p", "emulator_host": "127.0.0.1:9", "timeout": 1},
        name,
        auth_wait=0.2,
    )
    with pytest.raises(CredentialUnavailable):
        never_read.current()


def test_stale_side_input_views_never_override_a_newer_read(tmp_path: Path) -> None:
    name = fresh("views")
    config, versions = seeded(tmp_path, name, b"first-value", b"second-value")
    creds = Credentials(config, name, refresh_interval=0.05)
    old_view = StageView(name, versions[0], None, time.time() - 60)
    assert creds.current(old_view).version == versions[1]  # read current; the old view is ignored
    time.sleep(0.06)
    assert creds.current(old_view).version == versions[1]
    store = open_store(config)
    third = store.add_version(name, Secret(b"third-value"))
    store.promote(name, third, expect_current=versions[1])
    live = StageView(name, third, versions[1], time.time())
    time.sleep(0.06)
    assert creds.current(live).version == third  # a newer view announces the new version
    assert creds.current(None).version == third  # an empty side input is not an error


def test_accesses_are_counted_by_beam_and_the_server(gsm: FakeSecretManager) -> None:
    name = fresh("counted")
    config = {"type": "gcp", "project": "p", "emulator_host": gsm.address, "timeout": 1}
    store = open_store(config)
    store.ensure(name)
    store.promote(name, store.add_version(name, Secret(b"counted-value")), expect_current=None)
    before = gsm.calls["AccessSecretVersion"]
    creds = Credentials(config, name, refresh_interval=0.2)

    class Use(beam.DoFn):
        def setup(self) -> None:
            creds.setup()

        def process(self, element: int, view: StageView | None) -> Iterator[int]:
            time.sleep(0.02)  # 60 elements: about 1.2 s of work
            creds.call(lambda secret: secret.fingerprint, view)
            yield element

    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions([]))
    views = pipeline | ReadSecretVersions(config, name, refresh_interval=0.2)
    _ = pipeline | beam.Create(list(range(60))) | beam.ParDo(Use(), side_input(views))
    started = time.monotonic()
    result = pipeline.run()
    result.wait_until_finish()
    elapsed = time.monotonic() - started

    query = result.metrics().query(MetricsFilter().with_name(f"secrets/{name}/accesses"))[
        "counters"
    ]
    beam_count = sum(c.committed for c in query)
    times = ACCESSES.times(name)
    assert beam_count == len(times) == gsm.calls["AccessSecretVersion"] - before
    assert 3 <= len(times) <= elapsed / 0.2 + 1
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.2
    print(f"\naccesses: {len(times)} in {elapsed:.2f}s at a 0.2s interval (server saw the same)")


SEEN: list[Any] = []


def remember(element: int, view: StageView | None) -> int:
    """Module level, so the FnApiRunner (in this process) appends to this module's SEEN."""
    SEEN.append(view)
    return element


def test_streaming_side_input_is_deduplicated(tmp_path: Path) -> None:
    name = fresh("streamed")
    config, versions = seeded(tmp_path, name, b"streamed-value")
    SEEN.clear()

    pipeline = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(["--streaming"]))
    views = pipeline | ReadSecretVersions(config, name, refresh_interval=0.2, stop_after=0.8)
    _ = pipeline | beam.Create([1, 2, 3]) | beam.Map(remember, side_input(views))
    result = pipeline.run()
    result.wait_until_finish()
    reads = result.metrics().query(MetricsFilter().with_name(f"secrets/{name}/stage_reads"))[
        "counters"
    ]
    assert sum(c.committed for c in reads) >= 3  # several impulses, one value seen
    assert len(SEEN) == 3 and all(v.current == versions[0] for v in SEEN)
