"""``relatlas bench teach``: every algorithm on the same run config, one table of
merged, global, average client test and unseen-class stitched accuracy."""

from __future__ import annotations

import json

import mlflow
import pytest

from relatlas.benchmarks.sweep import SweepResources
from relatlas.benchmarks.teach_suite import ATLAS_ROW, ROWS, TeachSuiteConfig, run_teach_suite
from relatlas.server.cli import main

HEADER = "| dataset | algorithm | merged | global model | average client test | stitched, unseen classes | seeds |"


def test_a_tiny_digits_run_writes_one_table_with_every_column(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = TeachSuiteConfig(
        datasets=("digits",), rows=("fedavg", "relatlas"), seeds=(0,), rounds=1, probe_epochs=5,
        out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    records = run_teach_suite(suite, SweepResources(), in_process=True)
    assert [(r["algorithm"], r["status"]) for r in records] == [("fedavg", "completed"), ("relatlas", "completed")]
    lines = (tmp_path / "bench" / "table.md").read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 4
    fedavg, relatlas = (line.strip("| ").split(" | ") for line in lines[2:])
    assert fedavg[:2] == ["digits", "fedavg"] and relatlas[:2] == ["digits", "relatlas"]
    assert "n/a" not in fedavg and relatlas[3] == "n/a"  # no global model in relatlas
    assert all(" ± " in cell for cell in fedavg[2:6] + relatlas[2:3] + relatlas[4:6])
    assert all(r["average_client_test_accuracy"] is not None for r in records)
    assert json.loads((tmp_path / "bench" / "suite.json").read_text()) == records

    client = mlflow.MlflowClient(suite.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(suite.experiment).experiment_id])
    parent = next(run for run in runs if run.info.run_name == "bench-teach")
    assert sum(run.data.tags.get("mlflow.parentRunId") == parent.info.run_id for run in runs) == 2


def test_every_row_has_the_same_config_but_for_the_algorithm_and_the_atlas():
    runs, skipped = TeachSuiteConfig(seeds=(0, 1)).plan()
    assert skipped == [] and [labels["algorithm"] for labels, _ in runs[:12:2]] == list(ROWS)
    varying = ("algorithm", "atlas-weight", "atlas-objective", "out-dir")
    plans = {(labels["dataset"], labels["seed"]): set() for labels, _ in runs}
    for labels, config in runs:
        plans[labels["dataset"], labels["seed"]].add(
            tuple(sorted((k, str(v)) for k, v in config.to_mapping().items() if k not in varying))
        )
    assert len(plans) == 4 and all(len(keys) == 1 for keys in plans.values())
    atlas = next(config for labels, config in runs if labels["algorithm"] == ATLAS_ROW)
    assert atlas.algorithm == "relatlas" and atlas.atlas_weight == 3.0 and atlas.local_test_fraction == 0.2


def test_the_htfl_setting_skips_fedavg_for_its_different_encoders():
    runs, skipped = TeachSuiteConfig(datasets=("digits",), seeds=(0,), setting="htfl").plan()
    assert [labels["algorithm"] for labels, _ in runs] == [row for row in ROWS if row != "fedavg"]
    assert len(skipped) == 1 and skipped[0].startswith("fedavg on digits: n/a in setting htfl: algorithm fedavg averages one")
    assert all(config.num_clients == 20 and config.split == "dirichlet" for _, config in runs)


@pytest.mark.parametrize(
    ("option", "culprit"),
    [
        (["--setting", "cloud"], "unknown setting 'cloud'"),
        (["--algorithms", "fedsgd"], "unknown algorithm row 'fedsgd'"),
        (["--atlas-weight", "-1"], "atlas-weight must be a finite number"),
        (["--atlas-weight", "0"], f"row {ATLAS_ROW} needs an atlas-weight above 0"),
    ],
)
def test_a_bad_option_is_one_line(option, culprit, capsys, tmp_path):
    assert main(["bench", "teach", "--out", str(tmp_path / "bench"), *option]) == 2
    err = capsys.readouterr().err.strip()
    assert culprit in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bench").exists()
