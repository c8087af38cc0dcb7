"""``relatlas.run``'s types: Results read from a results.json, configs given as
run-config mappings, and the lazy top-level names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from relatlas.api import Results, as_config
from relatlas.registry import RegistryError
from relatlas.server.config import ConfigError, RunConfig

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_results_hold_the_headline_figures_and_the_whole_file(tmp_path):
    raw = {
        "status": "completed", "config": RunConfig(rounds=2).to_mapping(), "rounds": [{"round": 1}, {"round": 2}],
        "failures": [], "mlflow_run_id": "abc", "wall_seconds": 3.5, "merged_accuracy": 0.8, "client_accuracy": [0.7, 0.6],
        "concat_accuracy": 0.75,
    }  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps(raw))
    results = Results.from_file(tmp_path / "results.json")
    assert results.completed and results.config == RunConfig(rounds=2) and results.out_dir == tmp_path
    assert (results.merged_accuracy, results.client_accuracy, len(results.rounds)) == (0.8, (0.7, 0.6), 2)
    assert results.error is None and results.raw["concat_accuracy"] == 0.75


def test_a_mapping_is_checked_like_a_run_config():
    assert as_config({"num-clients": 4}) == RunConfig(num_clients=4)
    assert as_config(RunConfig(seed=3)) == RunConfig(seed=3)
    with pytest.raises(ConfigError, match="rounds must be positive"):
        as_config({"rounds": 0})
    with pytest.raises(RegistryError, match="plugin module 'no_such_plugin' could not be imported"):
        as_config({"plugins": "no_such_plugin"})


def test_a_mappings_plugins_load_before_its_names_are_checked():
    """In a fresh process: registering the example's entries here would change every later test's registries."""
    given = "{'plugins': 'my_encoder_plugin', 'aggregation': 'rank-mean'}"
    code = f"from relatlas.api import as_config; print(as_config({given}).aggregation)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": f"{EXAMPLES}:{Path(__file__).parents[1]}", "PATH": ""})  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "rank-mean", done.stderr[-1000:]


def test_import_relatlas_defers_the_api_until_it_is_used():
    loaded = "'relatlas.api' in sys.modules"
    code = f"import sys, relatlas; before = {loaded}; relatlas.run; print(before, {loaded})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "True"]
