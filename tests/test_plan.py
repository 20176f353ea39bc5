"""``beamwright plan``: specs translated for Dataflow (Beam's DataflowRunner, dry run, offline)
and for portable runners, with no network connection, checked by the job's shape."""

from __future__ import annotations

import ipaddress
import json
import socket
import sys

import pytest

from pipelines.cli import load_target, main
from pipelines.plan import PlanError, translate
from tests.stream_specs import orders_stream

pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient")  # the gcp extra


class NetworkGuard:
    """Refuses connections to anything but loopback and name lookups of anything but
    localhost, and records every attempt (loopback included: a plan should make none)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.attempts: list[str] = []
        connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

        def guarded_connect(sock: socket.socket, address: object) -> object:
            self.attempts.append(f"connect {address!r}")
            host = address[0] if isinstance(address, tuple) else None
            if host is None or not _loopback(host):
                raise OSError(f"test_plan: no network, refused a connection to {address!r}")
            return connect(sock, address)

        def guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
            self.attempts.append(f"getaddrinfo {host!r}")
            if not (isinstance(host, str) and (host == "localhost" or _loopback(host))):
                raise OSError(f"test_plan: no network, refused to look up {host!r}")
            return getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", guarded_connect)
        monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture
def offline(monkeypatch):
    return NetworkGuard(monkeypatch)


def _main_job(tmp_path):
    out = tmp_path / "out"
    return load_target(
        "data_processing",
        {"output_dir": str(out), "pseudonym_key_file": str(tmp_path / "pseudonym.key")},
    )


def _node_names(spec) -> list[str]:
    return [n.name for n in [*spec.sources, *spec.steps, *spec.sinks]] + ["DeadLetters"]


def _steps_of(plan, node: str) -> list[dict]:
    return [st for st in plan["steps"] if st["name"].split("/")[0] == node]


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The bundled template translated once through the CLI, with the network guarded."""
    tmp_path = tmp_path_factory.mktemp("plan")
    out = tmp_path / "job.json"
    params = ["-p", f"output_dir={tmp_path / 'out'}"]
    params += ["-p", f"pseudonym_key_file={tmp_path / 'pseudonym.key'}"]
    with pytest.MonkeyPatch.context() as monkeypatch:
        guard = NetworkGuard(monkeypatch)
        code = main(["plan", "data_processing", *params, "--out", str(out)])
    assert code == 0
    return json.loads(out.read_text()), guard.attempts, _main_job(tmp_path)


def test_main_job_translates_to_a_dataflow_batch_job(main_job):
    plan, attempts, spec = main_job
    assert attempts == []
    job = plan["job"]
    assert job["type"] == "JOB_TYPE_BATCH"
    assert job["name"] == "data-processing"
    environment = job["environment"]
    assert environment["version"]["job_type"] == "FNAPI_BATCH"
    assert "use_runner_v2" in environment["experiments"]
    (pool,) = environment["workerPools"]
    assert pool["workerHarnessContainerImage"].endswith("beam_python3.11_sdk:2.77.0") or (
        "beam_python" in pool["workerHarnessContainerImage"]
    )
    options = environment["sdkPipelineOptions"]["options"]
    assert options["project"] == "beamwright-plan" and options["dry_run"] is True
    assert options["pipelineUrl"].endswith("/pipeline.pb")
    assert plan["placeholders"] == {
        "project": "beamwright-plan",
        "region": "us-central1",
        "temp_location": "gs://beamwright-plan/tmp",
    }
    staged = {s["name"]: s for s in plan["staged"]}
    assert staged["pipeline.pb"]["bytes"] > 10_000
    assert all(s["location"].startswith("gs://beamwright-plan/tmp/") for s in staged.values())
    # the graph: every node of the spec is there, nothing is unbounded
    assert plan["streaming"] is False
    for node in _node_names(spec):
        assert _steps_of(plan, node), f"no step of node {node!r}"
        assert node in plan["composites"]
    assert all(st["bounded"] for st in plan["steps"] if "bounded" in st)
    kinds = {st["kind"] for st in plan["steps"]}
    assert {"Impulse", "ParDo", "GroupByKey", "Flatten"} <= kinds
    # steps say what they read: the validate step reads the clean step
    (validate,) = _steps_of(plan, "validate")
    assert validate["inputs"] and all(i.startswith("clean/") for i in validate["inputs"])


def test_the_cli_prints_a_summary(main_job, tmp_path, capsys):
    plan, _, _ = main_job
    code = main(["plan", "data_processing", "-p", f"output_dir={tmp_path}/out", "-p",
                 f"pseudonym_key_file={tmp_path}/k", "--runner", "flink"])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("translated: ") and "batch (flink)" in captured.err
    flink = json.loads(captured.out)
    assert "job" not in flink and flink["placeholders"] == {"flink_master": "[auto]"}
    # the same graph as Dataflow's, give or take runner-specific expansions
    assert {n.split("/")[0] for n in flink["composites"]} == {
        n.split("/")[0] for n in plan["composites"]
    }


@pytest.mark.parametrize(
    ("bounded", "streaming"),
    [(None, None), ("end_offsets", True)],
    ids=["unbounded-spec", "bounded-spec-as-streaming"],
)
def test_kafka_window_files_spec_translates_to_a_streaming_job(
    tmp_path, offline, bounded, streaming
):
    spec = orders_stream(tmp_path, bounded=bounded)
    plan = translate(spec, "dataflow", streaming=streaming)
    assert offline.attempts == []
    job = plan["job"]
    assert plan["streaming"] is True and job["type"] == "JOB_TYPE_STREAMING"
    environment = job["environment"]
    assert environment["version"]["job_type"] == "FNAPI_STREAMING"
    assert environment["sdkPipelineOptions"]["options"]["streaming"] is True
    assert "enable_streaming_engine" in environment["experiments"]
    # the Kafka read: a splittable DoFn whose output is unbounded
    reads = [st for st in _steps_of(plan, "orders") if st.get("splittable")]
    assert reads and all(st["bounded"] is False for st in reads)
    # the window step: into fixed windows (Beam's, or a WindowFn of the step's own, which
    # the proto carries pickled for the SDK harness), then a GroupByKey per key and window
    window = _steps_of(plan, "per_minute")
    assert any(st["kind"] == "WindowInto" for st in window)
    (group,) = [st for st in window if st["kind"] == "GroupByKey"]
    assert group["windowing"] in (["fixed_windows:v1"], ["pickled_python:v1"])
    assert group["bounded"] is False
    # the file sink writes (per pane), the Kafka sink and the dead-letter topic produce
    assert any(
        st["kind"] == "ParDo" and "Write" in st["name"] for st in _steps_of(plan, "warehouse")
    )
    assert any(st["name"].startswith("clean_orders/Produce") for st in plan["steps"])
    dead = _steps_of(plan, "DeadLetters")
    assert any(st["name"].startswith("DeadLetters/Produce") for st in dead)
    assert not any(st["kind"] == "GroupByKey" for st in dead)  # no file panes: a topic
    assert all(not st.get("bounded", False) for st in _steps_of(plan, "typed"))


def test_a_batch_job_of_an_unbounded_spec_is_refused(tmp_path, offline):
    spec = orders_stream(tmp_path)
    with pytest.raises(PlanError) as caught:
        translate(spec, "dataflow", streaming=False)
    assert caught.value.where == "sources" and "orders" in caught.value.problem
    assert "bounded: end_offsets" in caught.value.hint


def test_translation_makes_no_network_connection(tmp_path, offline):
    """The guard works (a connection out is refused and recorded), and translating the
    streaming Kafka job, whose broker cannot even be resolved, makes no attempt at all."""
    with pytest.raises(OSError, match="no network"):
        socket.create_connection(("192.0.2.1", 9), timeout=1)
    assert offline.attempts
    offline.attempts.clear()
    translate(orders_stream(tmp_path), "dataflow")
    assert offline.attempts == []


def test_errors_are_a_path_a_problem_and_a_hint(tmp_path, capsys, offline):
    key = f"pseudonym_key_file={tmp_path}/k"
    code = main(["plan", "data_processing", "-p", key, "-p", f"output_dir={tmp_path}/o",
                 "--option", "project=Not_A_Project"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("beamwright: run.runner_options: ") and "Not_A_Project" in err
    assert "Traceback" not in err
    with pytest.raises(PlanError, match="did you mean 'flink'"):
        translate(_main_job(tmp_path), "flinck")


def test_without_the_gcp_extra_the_error_says_what_to_install(tmp_path, monkeypatch, offline):
    from apache_beam.runners.dataflow import internal

    monkeypatch.delattr(internal, "apiclient")
    monkeypatch.setitem(sys.modules, "apache_beam.runners.dataflow.internal.apiclient", None)
    with pytest.raises(PlanError) as caught:
        translate(orders_stream(tmp_path), "dataflow")
    assert "pip install 'beamwright[gcp]'" in str(caught.value)


# --------------------------------------------------------------------------- run --dry-run


def _dry_run_args(tmp_path, *extra: str) -> list[str]:
    return [
        "run", "data_processing", "--quiet", "--runner", "dataflow", "--allow-local-secrets",
        "-p", f"output_dir={tmp_path}/out", "-p", f"pseudonym_key_file={tmp_path}/key",
        "--summary-json", str(tmp_path / "summary.json"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "how",
    [
        ["--dry-run", "--option", "project=my-project", "--option", "region=europe-west1",
         "--option", "temp_location=gs://bw-bucket/tmp"],
        ["--", "--project=my-project", "--region=europe-west1",
         "--temp_location=gs://bw-bucket/tmp", "--dry_run=true"],
    ],
    ids=["--dry-run", "beam's --dry_run"],
)  # fmt: skip
def test_run_dry_run_is_translated_not_failed(tmp_path, monkeypatch, offline, capsys, how):
    monkeypatch.chdir(tmp_path)
    code = main(_dry_run_args(tmp_path, *how))
    out = capsys.readouterr().out
    assert code == 0, out
    assert "translated:" in out and "FAILED" not in out
    graph = tmp_path / "beamwright-output" / "data-processing" / "job-graph-dataflow.json"
    plan = json.loads(graph.read_text())
    assert plan["job"]["name"] == "data-processing" and plan["placeholders"] == {}
    assert plan["job"]["environment"]["sdkPipelineOptions"]["options"]["project"] == "my-project"
    assert str(graph.relative_to(tmp_path)) in out
    assert not (tmp_path / "out").exists()  # nothing ran: no output, no lineage event
    assert not (tmp_path / "beamwright-output" / "lineage").exists()


def test_dry_run_needs_a_runner_to_translate_for(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["run", "data_processing", "--dry-run", "-p", f"output_dir={tmp_path}/o"])
    assert code == 2
    assert "--runner dataflow|portable|flink" in capsys.readouterr().err


def test_a_bad_temp_location_fails_at_once_instead_of_asking_gcs(tmp_path, offline, capsys):
    """Beam, finding temp and staging locations invalid, looks up a default bucket in GCS
    (two minutes of retries offline); the dry run says what is wrong before that."""
    code = main(_dry_run_args(tmp_path, "--dry-run", "--option", "project=my-project",
                              "--option", "region=r", "--option", "temp_location=gs://b/t"))  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert "run.runner_options.temp_location" in err and "gs://b/t" in err
    assert not any("googleapis" in a for a in offline.attempts)


def test_plan_resolves_no_secret_the_workers_resolve(tmp_path, monkeypatch, capsys, offline):
    """``env:`` secrets live on the workers: planning needs none of them (the password's
    variable is unset here), and a value that is set (the token) never reaches the plan."""
    monkeypatch.delenv("BW_PLAN_PW", raising=False)
    canary = "canary-token-5f1e9c"
    monkeypatch.setenv("BW_PLAN_TOKEN", canary)
    out = tmp_path / "job.json"
    argv = ["plan", "record_sync", "-p", "postgres_password=env:BW_PLAN_PW", "--out", str(out)]
    argv += ["-p", "api_token=env:BW_PLAN_TOKEN", "-p", "postgres=u@127.0.0.1:1/db"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert canary not in out.read_text() + captured.out + captured.err
