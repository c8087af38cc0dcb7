"""The examples run as a user would run them: fresh processes, the examples folder
on PYTHONPATH, digits at a small size."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
SMALL = ["--clients", "2", "--epochs", "1", "--probe-epochs", "5", "--simulation-baselines", "false", "--client-scores", "false"]
# The encoder registry (clients/encoders.py, build_classifier reading ENCODERS) lands separately.
ENCODER_REGISTRY = importlib.util.find_spec("relatlas.clients.encoders") is not None


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(EXAMPLES), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = os.environ | {"PYTHONPATH": path, "FLWR_TELEMETRY_ENABLED": "0"}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_python_api_example_prints_the_merged_accuracy(tmp_path):
    done = _run([sys.executable, str(EXAMPLES / "python_api.py")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "runs" / "python-api" / "results.json").read_text())
    assert "status: completed" in done.stdout
    assert f"merged accuracy: {results['merged_accuracy']:.3f}" in done.stdout


@pytest.mark.parametrize(
    "options",
    [
        ["--aggregation", "rank-mean"],
        pytest.param(
            ["--aggregation", "rank-mean", "--encoder", "wide-mlp"],
            marks=pytest.mark.skipif(not ENCODER_REGISTRY, reason="build_classifier does not read ENCODERS yet"),
        ),
    ],
)
def test_a_plugin_registers_entries_the_cli_and_every_client_use(tmp_path, options):
    command = [sys.executable, "-m", "relatlas.server.cli", "run", "--plugins", "my_encoder_plugin", *options, *SMALL]
    done = _run(command, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "runs" / "latest" / "results.json").read_text())
    given = dict(zip(options[::2], options[1::2]))
    assert results["status"] == "completed" and results["config"]["plugins"] == "my_encoder_plugin"
    assert all(results["config"][option.removeprefix("--")] == value for option, value in given.items())
    assert results["merged_accuracy"] > 0.3  # ten classes: well above chance
    assert "merged (rank-mean, label-free)" in " ".join(done.stdout.split())
