"""Parallel trials on Ray: four tiny federations at once, each an MLflow run
nested under the suite's run, and a broken trial reported while the others finish."""

from __future__ import annotations

import mlflow
import pytest

from relatlas.benchmarks.atlas_suite import AtlasSuiteConfig, atlas_table
from relatlas.benchmarks.suite import run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial
from relatlas.server.config import ConfigError, RunConfig


def test_four_tiny_trials_run_in_parallel_and_a_broken_one_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = AtlasSuiteConfig(
        splits=("shared-classes",), aggregations=("mean", "product"), anchor_counts=(16, 32), seeds=(0,), num_clients=2,
        epochs=1, probe_epochs=5, out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    broken = RunConfig(dataset="npz:/nonexistent/data.npz", num_clients=2, out_dir=str(tmp_path / "broken"))
    trials = suite.trials() + [Trial("broken", "relatlas.benchmarks.sweep:federation_trial", broken.to_mapping(), {"seed": 0})]
    records = run_sweep(
        "bench-atlas", {}, trials, SweepResources(cpus_per_trial=0.5), out_dir=tmp_path / "bench",
        tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=atlas_table,
    )  # fmt: skip

    completed = [r for r in records if r["status"] == "completed"]
    assert [r["trial"] for r in records] == [t.name for t in trials] and len(completed) == 4
    assert records[-1]["status"] == "failed" and "nonexistent" in records[-1]["error"]
    assert max(r["started"] for r in completed) < min(r["finished"] for r in completed)  # all four ran at once
    assert all(0.3 < r["merged_accuracy"] <= 1.0 for r in completed)
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "| digits | shared-classes | product | 32 |" in table and "- failed: broken:" in table

    client = mlflow.MlflowClient(suite.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(suite.experiment).experiment_id])
    [parent] = [run for run in runs if run.info.run_name == "bench-atlas"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4 and all(run.info.status == "FINISHED" for run in children)


def test_trial_resources_are_validated():
    with pytest.raises(ConfigError, match="cpus-per-trial must be > 0"):
        SweepResources(cpus_per_trial=0)
