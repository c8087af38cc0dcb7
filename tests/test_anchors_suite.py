"""The anchors benchmark on digits: one federation and the translation table,
nested under one MLflow suite run."""

from __future__ import annotations

import json

import mlflow
import pytest

from relatlas.aggregation.translation import RIDGES
from relatlas.benchmarks.anchors_suite import AnchorSuiteConfig, run_anchor_suite
from relatlas.benchmarks.sweep import SweepResources
from relatlas.server.config import ConfigError


def test_suite_writes_both_tables_and_nests_its_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = AnchorSuiteConfig(
        dataset="digits", seed_counts=(4,), translation_counts=(4, 64), seeds=(0,), modes=("bootstrapped",), epochs=2,
        probe_epochs=10, ridges=(0.1,), out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    records = run_anchor_suite(suite, SweepResources(cpus_per_trial=1))
    federation = [r for r in records if r["kind"] == "federation"]
    assert [(r["mode"], r["K"]) for r in federation] == [("bootstrapped", 4)]
    assert 0.5 < federation[0]["merged_accuracy"] <= 1.0 and federation[0]["cka_merged_centralized"] is not None
    assert all(r["status"] == "completed" for r in records)
    translations = {(r["method"], r["K"]): r for t in records if t["kind"] == "translation" for r in t["rows"]}
    assert {("inversion", 4), ("inversion", 64)} <= set(translations)  # the regularised inversion runs below K = d too
    assert translations[("procrustes", 64)]["centred_cosine"] > translations[("none (raw embeddings)", None)]["centred_cosine"]
    assert translations[("constant (target mean)", None)]["retrieval_top1"] < 0.01
    assert translations[("inversion", 64)]["ridge"] in RIDGES and translations[("inversion, ridge 0.1", 64)]["ridge"] == 0.1
    assert translations[("procrustes", 64)]["ridge"] is None
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "| bootstrapped | 4 |" in table and "| procrustes | 64 |" in table and "| inversion, ridge 0.1 | 64 |" in table
    assert json.loads((tmp_path / "bench" / "suite.json").read_text()) == records

    client = mlflow.MlflowClient(suite.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(suite.experiment).experiment_id])
    parent = next(run for run in runs if run.info.run_name == "bench-anchors-digits")
    children = sorted(run.info.run_name for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert len(children) == 2 and "translation-seed0" in children
    assert {"table.md", "suite.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_no_modes_runs_only_the_translations():
    suite = AnchorSuiteConfig(modes=(), seeds=(0, 1))
    assert suite.run_configs() == [] and [t.labels["kind"] for t in suite.trials()] == ["translation"] * 2


def test_unknown_mode_and_too_many_seeds_are_refused_before_any_run():
    with pytest.raises(ConfigError, match="unknown modes"):
        AnchorSuiteConfig(modes=("telepathy",)).run_configs()
    with pytest.raises(ConfigError, match="go up to translation-pool"):
        AnchorSuiteConfig(translation_counts=(4, 256)).trials()
