"""The continual benchmark suite, centralised setting on digits: a table, a
suite record and MLflow runs nested under the suite's run."""

from __future__ import annotations

import json

import mlflow
import pytest

from relatlas.benchmarks.continual_suite import SuiteConfig, run_suite
from relatlas.benchmarks.sweep import SweepResources
from relatlas.server.config import ConfigError


def test_centralised_suite_logs_nested_runs_and_a_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = SuiteConfig(
        dataset="digits", experiences=2, strategies=("replay",), buffers=(50,), seeds=(0,), settings=("centralised",),
        epochs=2, out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    records = run_suite(suite, SweepResources(cpus_per_trial=1))
    assert all(r["status"] == "completed" for r in records)
    assert [(r["regularizer"], len(r["accuracy_matrix"])) for r in records] == [("none", 2), ("casper", 2)]
    assert all(0.0 <= r["average_accuracy"] <= 1.0 and r["forgetting"] is not None for r in records)
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "| centralised | replay | 50 | casper |" in table
    assert json.loads((tmp_path / "bench" / "suite.json").read_text()) == records

    client = mlflow.MlflowClient(suite.tracking_uri)
    experiment = client.get_experiment_by_name(suite.experiment)
    runs = client.search_runs([experiment.experiment_id])
    parent = next(run for run in runs if run.info.run_name == "bench-continual-digits")
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 2 and all(run.info.status == "FINISHED" for run in children)
    assert "Top1_Acc_Stream/eval_phase/test_stream" in children[0].data.metrics  # written by MLflowLogger


def test_unknown_setting_is_refused_before_any_run():
    with pytest.raises(ConfigError, match="unknown settings"):
        SuiteConfig(settings=("cloud",)).run_configs()
