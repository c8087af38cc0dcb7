"""A signal to the run's whole process group, as a terminal's Ctrl-C, ``timeout``
or ``kill -TERM -PGID`` sends it: the run stops within seconds, records only
whole rounds, ends its MLflow run KILLED, leaves no process behind, and
``--resume`` completes it with the numbers of a run never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import psutil
import pytest

from relatlas.server import simulation
from relatlas.server.checkpoint import CHECKPOINT_DIR, STATE_FILE
from relatlas.server.cli import main
from relatlas.server.config import RunConfig
from relatlas.server.interruption import Interrupted, on_signals
from relatlas.server.simulation import drive_engine, run_simulation
from tests.test_resume import _args, _comparable

pytestmark = pytest.mark.faults

# round 2 trains for seconds, so a signal sent as round 1's checkpoint appears lands in it; it is not the
# last round, whose clients drop their saved state as they reply (docs/howto/resume.md): a client that
# replied before the signal would then train again from the start on --resume, and the numbers differ
OPTIONS = {"rounds": 3, "epochs": 10, "probe-epochs": 5, "eval-samples": 200}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def _start(options: dict) -> subprocess.Popen:
    """``relatlas run`` leading a process group of its own, as a shell starts a job."""
    command = [sys.executable, "-m", "relatlas.server.cli", "run", *_args(options)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _wait_for(run: subprocess.Popen, ready) -> None:
    deadline = time.monotonic() + 300
    while not ready():
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.05)


def _signal_group(run: subprocess.Popen, signum: int) -> tuple[int, float, list[int]]:
    """Signal ``run``'s process group; its exit code, seconds to exit, and its processes left running."""
    processes = psutil.Process(run.pid).children(recursive=True)  # Ray's among them
    signalled = time.monotonic()
    os.killpg(run.pid, signum)
    code = run.wait(timeout=60)
    seconds = time.monotonic() - signalled
    _, alive = psutil.wait_procs(processes, timeout=15)  # a loaded machine takes seconds to reap Ray's workers
    return code, seconds, [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _mlflow_status(options: dict, run_id: str) -> str:
    return mlflow.MlflowClient(options["tracking-uri"]).get_run(run_id).info.status


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    """The run never stopped."""
    tmp = tmp_path_factory.mktemp("whole")
    with pytest.MonkeyPatch.context() as patch:  # before the tests' own fixtures: keep client state in the test's folder
        patch.setenv("XDG_STATE_HOME", str(tmp / "client-state"))
        run_simulation(RunConfig.from_mapping(OPTIONS | {"out-dir": str(tmp / "out"), "tracking-uri": f"sqlite:///{tmp}/m.db"}))
    return tmp / "out"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_the_group_while_clients_train_stops_the_run_and_resume_completes_it(tmp_path, whole, signum):
    options = OPTIONS | {"out-dir": str(tmp_path / "stopped"), "tracking-uri": f"sqlite:///{tmp_path}/m.db"}
    state = tmp_path / "stopped" / CHECKPOINT_DIR / STATE_FILE
    run = _start(options)
    _wait_for(run, state.exists)
    code, seconds, left = _signal_group(run, signum)
    output = run.stdout.read()
    assert code == 128 + signum and seconds < 15, output
    assert not left
    assert "Traceback" not in output

    name = signal.Signals(signum).name
    results = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert results["status"] == "interrupted" and results["error"] == f"interrupted by {name}"
    assert json.loads(state.read_text())["round"] == 1
    assert [r["round"] for r in results["rounds"]] == [1]  # round 2, cut short, is not recorded
    assert _mlflow_status(options, results["mlflow_run_id"]) == "KILLED"

    assert main(["run", "--resume", str(tmp_path / "stopped")]) == 0
    assert _comparable(whole) == _comparable(tmp_path / "stopped")


def test_a_sigint_once_the_clients_replied_records_no_round_scored_after_it(tmp_path):
    """The clients save their state, then reply: a signal then lands as the server
    collects and scores round 1 (long probes), which must not be recorded."""
    options = OPTIONS | {
        "epochs": 1, "probe-epochs": 400, "out-dir": str(tmp_path / "stopped"), "tracking-uri": f"sqlite:///{tmp_path}/m.db",
    }  # fmt: skip
    saved = Path(os.environ["XDG_STATE_HOME"]) / "relatlas" / "client-state"
    run = _start(options)
    _wait_for(run, lambda: len(list(saved.glob("*/partition-*/round-1.pt"))) == 3)
    code, seconds, left = _signal_group(run, signal.SIGINT)
    output = run.stdout.read()
    assert code == 130 and seconds < 15 and not left, output
    results = json.loads((tmp_path / "stopped" / "results.json").read_text())
    assert results["status"] == "interrupted" and results["rounds"] == [] and results["failures"] == []
    assert not (tmp_path / "stopped" / CHECKPOINT_DIR / STATE_FILE).exists()
    assert _mlflow_status(options, results["mlflow_run_id"]) == "KILLED"
    assert "no round had finished" in output


def test_a_sigint_during_start_up_is_one_line_and_exit_130(tmp_path):
    options = OPTIONS | {"out-dir": str(tmp_path / "stopped"), "tracking-uri": f"sqlite:///{tmp_path}/m.db"}
    run = _start(options)
    time.sleep(1)  # importing torch, Flower and Ray takes longer; any moment before round 1 is start-up
    code, _, left = _signal_group(run, signal.SIGINT)
    output = run.stdout.read()
    assert code == 130 and not left, output
    assert "Traceback" not in output and "interrupted by SIGINT" in output
    assert not (tmp_path / "stopped" / CHECKPOINT_DIR / STATE_FILE).exists()


def _signal_self_after(seconds: float) -> None:
    threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT)).start()


def test_an_engine_still_waiting_for_its_clients_after_the_grace_is_left_behind(monkeypatch):
    """As with a joined cluster's actors, which are not this process's to kill."""
    monkeypatch.setattr(simulation, "STOP_GRACE_SECONDS", 0.5)
    release = threading.Event()
    with on_signals(), pytest.raises(Interrupted) as raised:
        _signal_self_after(0.3)
        drive_engine(lambda: release.wait(60))
    release.set()
    assert raised.value.engine_running and raised.value.exit_code == 130


def test_an_engine_that_ends_without_error_after_the_signal_completed_its_run():
    """The ServerApp recorded a last round whose replies were all in: not an interruption."""
    with on_signals():
        _signal_self_after(0.1)
        drive_engine(lambda: time.sleep(0.5))


def test_a_signal_during_start_up_is_kept_by_the_run_s_own_block():
    """``relatlas run`` records from its start; the simulation's block, opened later, must not clear it."""
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a job a shell put in the background
    with on_signals():
        os.kill(os.getpid(), signal.SIGINT)  # handled at once, in this (the main) thread
        with on_signals(), pytest.raises(Interrupted) as raised:
            simulation.interruption.check()
    assert raised.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is before  # as before the blocks
