"""Run a suite's trials in parallel as Ray tasks, on this machine or a Ray cluster.

Each trial is a Ray task holding ``cpus_per_trial`` CPUs (and ``gpus_per_trial``
GPUs) that runs the trial in a fresh Python process: a federation starts its own
Ray instance there, sized to the trial's share, so trials never compete for one
actor pool. Every trial logs an MLflow run nested under the suite's run. A trial
that fails is recorded with its error; the others go on.

``python -m relatlas.benchmarks.sweep SPEC_FILE`` is the process a task starts.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
from rich.progress import Progress

from relatlas.server.config import ConfigError

# A trial's runner: (params, parent MLflow run id, CPUs, GPUs) -> the trial's record fields.
Runner = Callable[[dict[str, Any], str, int, float], dict[str, Any]]


@dataclass(frozen=True)
class Trial:
    """One cell of a suite's grid: what to run, and how it is labelled in the table."""

    name: str
    runner: str  # "module:function", a Runner
    params: dict[str, Any]  # JSON values
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepResources:
    """Where trials run and what each one holds."""

    ray_address: str = ""  # empty: RAY_ADDRESS if set, else a new local Ray instance
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ConfigError(
                f"cpus-per-trial must be > 0 and gpus-per-trial >= 0; got {self.cpus_per_trial} and {self.gpus_per_trial}"
            )


def _trial_process(trial: Trial, parent_run_id: str, cpus: float, gpus: float, cwd: str) -> dict[str, Any]:
    """The Ray task: run ``trial`` in a child process (in the suite's folder
    ``cwd`` when this node has it), return its record."""
    started = time.time()
    with tempfile.TemporaryDirectory() as scratch:
        spec, result = Path(scratch) / "spec.json", Path(scratch) / "result.json"
        spec.write_text(
            json.dumps(asdict(trial) | {"parent_run_id": parent_run_id, "cpus": max(1, math.ceil(cpus)), "gpus": gpus})
        )
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # the trial's own Ray instance
        done = subprocess.run(
            [sys.executable, "-m", "relatlas.benchmarks.sweep", str(spec), str(result)],
            capture_output=True, text=True, env=env, cwd=cwd if Path(cwd).is_dir() else None,
        )  # fmt: skip
        record = trial.labels | {"trial": trial.name, "started": started, "finished": time.time()}
        if done.returncode != 0 or not result.exists():
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            return record | {"status": "failed", "error": lines[-1][:300] if lines else f"exit code {done.returncode}"}
        return record | {"status": "completed"} | json.loads(result.read_text())


def run_trials(
    trials: Sequence[Trial],
    parent_run_id: str,
    resources: SweepResources,
    on_record: Callable[[dict[str, Any]], None],
) -> list[dict[str, Any]]:
    """Run every trial as a Ray task; ``on_record`` sees each record as it arrives.
    Returns the records in the order of ``trials``."""
    from relatlas.server.simulation import check_client_resources, init_ray  # as for a federation's clients

    init_ray(resources.ray_address or os.environ.get("RAY_ADDRESS") or "local")  # never a stray local cluster
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        check_client_resources(resources.cpus_per_trial, resources.gpus_per_trial, nodes)
        task = ray.remote(_trial_process).options(
            num_cpus=resources.cpus_per_trial, num_gpus=resources.gpus_per_trial, max_retries=0
        )
        cpus, gpus = resources.cpus_per_trial, resources.gpus_per_trial
        pending = {task.remote(trial, parent_run_id, cpus, gpus, os.getcwd()): i for i, trial in enumerate(trials)}
        records: dict[int, dict[str, Any]] = {}
        with Progress() as progress:
            bar = progress.add_task(f"{len(trials)} trials", total=len(trials))
            while pending:
                [ready], _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(ready)
                records[index] = ray.get(ready)
                on_record(records[index])
                if records[index]["status"] == "failed":
                    progress.console.print(f"[red]trial {trials[index].name} failed: {records[index]['error']}[/red]")
                progress.advance(bar)
        return [records[i] for i in range(len(trials))]
    finally:
        ray.shutdown()


def run_trials_here(
    trials: Sequence[Trial], parent_run_id: str, resources: SweepResources, on_record: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """``run_trials`` without Ray: each trial in a fresh process of its own, as a Ray task
    runs it (the same runner, the same numbers), one after another on this machine
    (one short of memory for a Ray instance)."""
    records = []
    for trial in trials:
        records.append(_trial_process(trial, parent_run_id, resources.cpus_per_trial, resources.gpus_per_trial, os.getcwd()))
        on_record(records[-1])
    return records


def results_record(out_dir: Path) -> dict[str, Any]:
    """A finished run's ``results.json`` without the config, the per-round detail and the note: a trial's record fields."""
    results = json.loads((out_dir / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in ("config", "rounds", "note")}


def federation_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A Runner: one federation (run-config ``params``) on its own Ray instance;
    its ``results.json`` without the per-round detail, plus training seconds
    (the slowest client's, summed over rounds)."""
    from relatlas.server.config import RunConfig
    from relatlas.server.simulation import run_simulation

    config = RunConfig.from_mapping(params | {"parent-run": parent_run_id})
    run_simulation(config, own_instance=(cpus, math.ceil(gpus)))  # a GPU share is a whole GPU to the trial's instance
    rounds = json.loads((Path(config.out_dir) / "results.json").read_text())["rounds"]
    seconds = sum(max(r["client_train_seconds"]) for r in rounds)
    return results_record(Path(config.out_dir)) | {"train_seconds": seconds}


def main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["cpus"])  # the trial's share, not the whole machine
    module, function = spec["runner"].split(":")
    runner: Runner = getattr(importlib.import_module(module), function)
    record = runner(spec["params"], spec["parent_run_id"], spec["cpus"], spec["gpus"])
    Path(result_path).write_text(json.dumps(record))


if __name__ == "__main__":
    main(*sys.argv[1:3])
