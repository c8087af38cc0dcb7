"""Checkpoints and ``relatlas run --resume``: a run killed after round 2 of 4
and resumed ends with the results of a run never killed, in the same MLflow run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import mlflow
import pytest

import relatlas
from relatlas.server.checkpoint import CHECKPOINT_DIR, STATE_FILE, Checkpoint
from relatlas.server.cli import main
from relatlas.server.config import RunConfig
from relatlas.server.simulation import run_simulation
from tests import hostile_clients
from tests.test_federation import _without_timings

cloudpickle.register_pickle_by_value(hostile_clients)  # Ray workers need not import tests/

OPTIONS = {"rounds": 4, "epochs": 1, "probe-epochs": 5, "eval-samples": 200}


def _args(options: dict) -> list[str]:
    return [text for key, value in options.items() for text in (f"--{key}", str(value))]


def _recorded_rounds(out_dir: Path) -> int:
    results = out_dir / "results.json"  # replaced atomically: never read half-written
    return len(json.loads(results.read_text())["rounds"]) if results.exists() else 0


def _kill_after_round(options: dict, out_dir: Path, round_number: int) -> int:
    """Start ``relatlas run`` in its own process group; SIGKILL the group once
    ``round_number`` is checkpointed and recorded in ``results.json`` (written after the
    checkpoint). Returns the round checkpointed."""
    state = out_dir / CHECKPOINT_DIR / STATE_FILE
    command = [sys.executable, "-m", "relatlas.server.cli", "run", *_args(options)]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while _recorded_rounds(out_dir) < round_number:
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before its checkpoint"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    return json.loads(state.read_text())["round"]


def _comparable(out_dir: Path) -> dict:
    """A final ``results.json`` without timings and the paths that differ by design."""
    results = _without_timings(json.loads((out_dir / "results.json").read_text()))
    for key in ("out-dir", "tracking-uri", "resume"):
        results["config"].pop(key)
    return results


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole = RunConfig.from_mapping(OPTIONS | {"out-dir": str(tmp_path / "whole"), "tracking-uri": f"sqlite:///{tmp_path}/a.db"})
    run_simulation(whole)

    killed = OPTIONS | {"out-dir": str(tmp_path / "killed"), "tracking-uri": f"sqlite:///{tmp_path}/b.db"}
    checkpointed = _kill_after_round(killed, tmp_path / "killed", 2)
    assert checkpointed < 4
    partial = json.loads((tmp_path / "killed" / "results.json").read_text())
    # finished rounds are kept; the kill may land between a checkpoint and its results.json
    assert partial["status"] == "running" and 2 <= len(partial["rounds"]) <= checkpointed <= len(partial["rounds"]) + 1

    assert main(["run", "--resume", str(tmp_path / "killed")]) == 0
    assert _comparable(tmp_path / "whole") == _comparable(tmp_path / "killed")

    client = mlflow.MlflowClient(killed["tracking-uri"])
    runs = client.search_runs([client.get_experiment_by_name("relatlas").experiment_id])
    assert [run.info.run_id for run in runs] == [Checkpoint.load(tmp_path / "killed").mlflow_run_id]
    assert runs[0].info.status == "FINISHED" and runs[0].data.tags["resumed_from"] == str(tmp_path / "killed")
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "merged_accuracy")] == [1, 2, 3, 4]


def test_a_client_that_missed_a_round_rejoins_in_the_next(tmp_path):
    config = RunConfig.from_mapping(
        OPTIONS | {"rounds": 2, "out-dir": str(tmp_path / "run"), "tracking-uri": f"sqlite:///{tmp_path}/m.db"}
    )
    run_simulation(config, client_app=hostile_clients.absent_app(2, {1}))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "completed"
    assert [r["client_partitions"] for r in results["rounds"]] == [[0, 1], [0, 1, 2]]
    assert [f["reason"] for f in results["failures"]] == ["client failed: RuntimeError: partition 2 is away in round 1"]


def test_resuming_a_completed_run_does_nothing_and_with_a_changed_config_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    config = RunConfig.from_mapping(OPTIONS | {"rounds": 2, "out-dir": str(run), "tracking-uri": f"sqlite:///{tmp_path}/m.db"})
    run_simulation(config)
    assert main(["run", "--resume", str(run), "--epochs", "3"]) == 2
    assert "resume refused: the config differs from the checkpointed run's (epochs 1 -> 3)" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err

    finished = (run / "results.json").read_bytes()
    assert main(["run", "--resume", str(run)]) == 0  # before: trained every round again
    assert capsys.readouterr().out == f"the run in {run} is already complete; results in {run / 'results.json'}\n"
    resumed = relatlas.run(dataclasses.replace(config, resume=str(run)))
    assert resumed.completed and resumed.raw == json.loads(finished)
    assert (run / "results.json").read_bytes() == finished  # nothing ran, nothing was rewritten
    client = mlflow.MlflowClient(config.tracking_uri)
    assert len(client.search_runs([client.get_experiment_by_name("relatlas").experiment_id])) == 1


def test_a_resumed_continual_run_keeps_its_client_runs_and_replay_buffers(tmp_path):
    options = {
        "scenario": "continual", "experiences": 3, "split": "same-classes", "strategy": "replay", "buffer": 60,
        "epochs": 1, "probe-epochs": 5, "eval-samples": 200,
    }  # fmt: skip
    whole = options | {"out-dir": str(tmp_path / "whole"), "tracking-uri": f"sqlite:///{tmp_path}/a.db"}
    run_simulation(RunConfig.from_mapping(whole))
    killed = options | {"out-dir": str(tmp_path / "killed"), "tracking-uri": f"sqlite:///{tmp_path}/b.db"}
    assert _kill_after_round(killed, tmp_path / "killed", 1) < 3

    assert main(["run", "--resume", str(tmp_path / "killed")]) == 0
    assert _comparable(tmp_path / "whole") == _comparable(tmp_path / "killed")
    client = mlflow.MlflowClient(killed["tracking-uri"])
    runs = client.search_runs([client.get_experiment_by_name("relatlas").experiment_id])
    nested = sorted(run.info.run_name for run in runs if "mlflow.parentRunId" in run.data.tags)
    assert nested == ["client-0", "client-1", "client-2"]
    assert len(runs) == 4 and all(run.info.status == "FINISHED" for run in runs)
