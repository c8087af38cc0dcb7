"""Flower's deployment engine on loopback: a SuperLink and 3 SuperNodes as
separate processes, TLS with the project's certificates, SuperNode
authentication, the app submitted with ``flwr run``."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import mlflow
import psutil
import pytest

from relatlas.server.checkpoint import resume_config
from relatlas.server.config import RunConfig
from relatlas.server.credentials import CA_CERT, CredentialsError, generate_credentials, generate_supernode_keys
from relatlas.server.deployment import DeploymentError, LocalDeployment, port_in_use, write_run_config
from relatlas.server.process_record import stop_processes
from relatlas.server.simulation import run_simulation
from tests.test_federation import _without_timings

pytestmark = pytest.mark.deployment

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"epochs": 2, "probe-epochs": 10}


def _free_port_block(count: int) -> int:
    for base in range(21000, 40000, 50):
        if not any(port_in_use(port) for port in range(base, base + count)):
            return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def federation(tmp_path_factory):
    base = _free_port_block(4)
    deployment = LocalDeployment(tmp_path_factory.mktemp("deployment"), supernodes=3, port=base, supernode_port=base + 1)
    pids = deployment.up()
    try:
        yield deployment
    finally:
        stopped = deployment.down()
    assert set(stopped) <= set(pids)  # a SuperNode a test killed is not signalled again
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in pids)


def _overrides(tmp_path: Path, name: str, **values) -> dict:
    return SMALL | values | {"out-dir": str(tmp_path / name), "tracking-uri": f"sqlite:///{tmp_path}/mlflow.db"}


def _results(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / name / "results.json").read_text())


def test_the_superlink_speaks_tls_with_the_project_certificate_only(federation):
    trusted = ssl.create_default_context(cafile=str(federation.certificates / CA_CERT))
    with socket.create_connection(("127.0.0.1", federation.port)) as raw:
        with trusted.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection(("127.0.0.1", federation.port)) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")


def test_a_deployed_run_equals_the_simulation_with_the_same_seed(federation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    federation.run(ROOT, _overrides(tmp_path, "deployed"))
    deployed = _results(tmp_path, "deployed")
    assert deployed["status"] == "completed" and deployed["client_partitions"] == [0, 1, 2]
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(deployed["mlflow_run_id"])
    assert run.info.status == "FINISHED"

    run_simulation(RunConfig.from_mapping(_overrides(tmp_path, "simulated")))
    one, two = _without_timings(deployed), _without_timings(_results(tmp_path, "simulated"))
    for results in (one, two):
        results["config"].pop("out-dir")
    assert one == two


def test_an_unregistered_supernode_cannot_join(federation, tmp_path):
    generate_supernode_keys(tmp_path, 1)  # a valid key pair the SuperLink never registered
    rogue = subprocess.Popen(
        [
            federation.executable("flower-supernode"), "--superlink", federation.address,
            "--root-certificates", str(federation.certificates / CA_CERT), "--auth-supernode-private-key",
            str(tmp_path / "supernode-0"),
            "--port", str(_free_port_block(1)),
        ],
        env=federation.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(10)
        assert rogue.poll() is None or rogue.returncode != 0
        assert federation.online_nodes() == 3
    finally:
        stop_processes([rogue.pid])


def test_running_on_a_stopped_federation_is_refused_in_one_line(tmp_path):
    with pytest.raises(DeploymentError, match="no federation runs from .*: `relatlas deploy up` first"):
        LocalDeployment(tmp_path).run(ROOT, {})


def test_a_deployed_run_whose_serverapp_is_killed_resumes_to_the_simulated_numbers(federation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = {"rounds": 3, "epochs": 1, "probe-epochs": 5, "eval-samples": 200}
    overrides = _overrides(tmp_path, "resumed", **options)
    ended: list[str] = []  # how `flwr run` ended once its ServerApp died: it may report the failure
    run = threading.Thread(target=_submit, args=(federation, overrides, ended))
    run.start()
    state = tmp_path / "resumed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 180
    while not (state.exists() and json.loads(state.read_text())["round"] >= 1):
        assert run.is_alive() and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    superlink = psutil.Process(federation.recorded()["processes"][0]["pid"])
    for process in superlink.children(recursive=True):
        if _is_process(process, "flwr-serverapp"):
            process.kill()
    run.join(timeout=300)  # `flwr run` ends once the SuperLink notices, about a minute later
    assert ended and json.loads(state.read_text())["round"] < 3

    federation.run(ROOT, resume_config(tmp_path / "resumed", {}).to_mapping())
    run_simulation(RunConfig.from_mapping(_overrides(tmp_path, "simulated", **options)))
    one, two = _without_timings(_results(tmp_path, "resumed")), _without_timings(_results(tmp_path, "simulated"))
    for results in (one, two):
        for key in ("out-dir", "resume"):
            results["config"].pop(key)
    assert one == two and [r["round"] for r in one["rounds"]] == [1, 2, 3]
    tracking = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    resumed = tracking.get_run(_results(tmp_path, "resumed")["mlflow_run_id"])
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resumed_from"] == str(tmp_path / "resumed")


def _submit(federation: LocalDeployment, overrides: dict, ended: list[str]) -> None:
    try:
        federation.run(ROOT, overrides)
        ended.append("completed")
    except DeploymentError as err:
        ended.append(str(err))


def _is_process(process: psutil.Process, name: str) -> bool:
    """Whether ``process`` is a live ``name`` (it may end while we look)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE and name in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.faults
def test_a_client_killed_mid_round_is_dropped_and_the_round_completes(federation, tmp_path):
    """Last in this module: it kills SuperNode 2."""
    victim = psutil.Process(federation.recorded()["processes"][3]["pid"])
    overrides = _overrides(tmp_path, "killed", **{"round-timeout": 60.0, "simulation-baselines": False, "epochs": 3})
    run = threading.Thread(target=federation.run, args=(ROOT, overrides))
    run.start()
    deadline = time.monotonic() + 120
    while not any(_is_process(child, "flwr-clientapp") for child in victim.children(recursive=True)):
        assert time.monotonic() < deadline, "SuperNode 2 never started its ClientApp"
        time.sleep(0.2)
    time.sleep(1.0)  # the ClientApp is loading its data or training
    for process in [victim, *victim.children(recursive=True)]:
        try:
            process.kill()
        except psutil.Error:
            pass
    run.join(timeout=300)
    results = _results(tmp_path, "killed")
    # the server binds partitions to nodes by id, so which partition SuperNode 2 held is the server's choice
    assert results["status"] == "completed" and len(results["client_partitions"]) == 2
    assert len(results["failures"]) == 1 and results["failures"][0]["round"] == 1
    assert results["failures"][0]["reason"]


def test_down_signals_only_the_processes_up_started(tmp_path):
    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    deployment = LocalDeployment(tmp_path)
    deployment._record([sleeper.pid for sleeper in sleepers])
    record = json.loads(deployment.processes_file.read_text())
    record["processes"][0]["create_time"] -= 1.0  # the boot time stepped by a second (the real reads may step once more)
    record["processes"][1]["create_time"] += 5.0  # as if the pid now belonged to another process
    deployment.processes_file.write_text(json.dumps(record))
    assert deployment.down() == [sleepers[0].pid]
    assert not psutil.pid_exists(sleepers[0].pid) and sleepers[1].poll() is None  # stop_processes reaped the first
    sleepers[1].kill()
    sleepers[1].wait()


def test_run_config_overrides_are_written_as_toml(tmp_path):
    values = {"dataset": 'npz:/data/a "b".npz', "epochs": 2, "learning-rate": 0.5, "client-scores": False}
    assert tomllib.loads(write_run_config(tmp_path / "c.toml", values).read_text()) == values


def test_up_refuses_a_partial_set_of_credentials_and_starts_nothing(tmp_path):
    base = _free_port_block(3)
    deployment = LocalDeployment(tmp_path, supernodes=2, port=base, supernode_port=base + 1)
    generate_credentials(deployment.certificates, 1)  # one SuperNode's keys: the second is missing
    kept = {path: path.read_bytes() for path in deployment.certificates.iterdir()}
    with pytest.raises(
        DeploymentError, match="lack supernode-1, supernode-1.pub: `relatlas deploy credentials --dir .* --force`"
    ):
        deployment.up()
    assert {path: path.read_bytes() for path in deployment.certificates.iterdir()} == kept
    assert not deployment.processes_file.exists() and not port_in_use(base)


@pytest.mark.parametrize(
    "record",
    [
        '{"processes": [',
        "[1, 2]",
        '{"processes": [{"pid": -1, "create_time": 0, "cmdline": []}], "address": "", "supernodes": 3}',
    ],
)
def test_a_malformed_process_record_is_refused_in_one_line_naming_it(tmp_path, record):
    deployment = LocalDeployment(tmp_path)
    deployment.processes_file.write_text(record)
    with pytest.raises(DeploymentError, match="processes.json is not a record of `relatlas deploy up`") as err:
        deployment.down()
    assert str(deployment.processes_file) in str(err.value) and "\n" not in str(err.value)
    assert deployment.processes_file.read_text() == record  # kept: it may be all that names the running processes


@pytest.mark.parametrize(("supernodes", "port"), [(-1, 9093), (0, 9093), (3, 70000), (3, -1)])
def test_a_federation_of_no_supernodes_or_impossible_ports_is_refused(tmp_path, supernodes, port):
    with pytest.raises((CredentialsError, DeploymentError), match="supernodes must be 1 to|must be in 1..65535"):
        LocalDeployment(tmp_path, supernodes=supernodes, port=port)
