"""The examples run as a user would run them: fresh processes, the examples folder
on PYTHONPATH, digits at a small size."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
EXAMPLES = ROOT / "examples"
SMALL = ["--clients", "2", "--epochs", "1", "--probe-epochs", "5", "--simulation-baselines", "false", "--client-scores", "false"]


def _run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(EXAMPLES), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = os.environ | {"PYTHONPATH": path, "FLWR_TELEMETRY_ENABLED": "0"} | env
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
        ["--aggregation", "rank-mean", "--encoder", "wide-mlp"],
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


def test_heterogeneous_example_merges_clients_of_three_widths(tmp_path):
    widths = "mlp:dim=64,mlp:hidden=64:dim=32,mlp:hidden=32:dim=16"
    settings = [f'encoder="{widths}"', 'dataset="digits"', "anchors=32", "eval-samples=0", "probe-epochs=5"]
    command = [sys.executable, str(EXAMPLES / "heterogeneous_federation.py"), "--out-dir", str(tmp_path / "out")]
    done = _run([*command, *(f"--set={setting}" for setting in settings)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("merged space (mean): accuracy") for line in lines)
    assert sum("wide): own space accuracy" in line for line in lines) == 3
    assert all(f"{width} wide): own space accuracy" in done.stdout for width in (64, 32, 16))


def test_flwr_run_loads_the_plugin_in_the_server_and_client_apps(tmp_path):
    """``flwr run .`` (as ``make flwr-run``): the run config's ``plugins`` reaches the
    ServerApp and, through the task, each ClientApp."""
    home, out = tmp_path / "flwr-home", tmp_path / "out"
    overrides = (
        f'out-dir="{out}" tracking-uri="sqlite:///{tmp_path}/mlflow.db" plugins="my_encoder_plugin" aggregation="rank-mean" '
        "num-clients=2 epochs=1 probe-epochs=5 simulation-baselines=false client-scores=false"
        ' encoder="wide-mlp"'
    )
    bin_dir = str(Path(sys.executable).parent)  # flwr starts flower-superlink from PATH
    command = [str(Path(bin_dir) / "flwr"), "run", ".", "local", "--stream",
               "--federation-config", "num-supernodes=2", "--run-config", overrides]  # fmt: skip
    try:
        path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
        done = _run(command, ROOT, FLWR_HOME=str(home), FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", PATH=path)
    finally:
        _stop_superlinks_of(home)
    assert done.returncode == 0, (done.stdout + done.stderr)[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "completed" and results["config"]["aggregation"] == "rank-mean"
    assert results["config"]["encoder"] == "wide-mlp"


def _stop_superlinks_of(home: Path) -> None:
    """Stop the local SuperLink ``flwr run`` started for this FLWR_HOME, and no other."""
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            mine = f"FLWR_HOME={home}".encode() in environ.read_bytes().split(b"\0")
            command = (environ.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if mine and b"flower-superlink" in command:
            os.kill(int(environ.parent.name), signal.SIGTERM)


def test_a_text_table_federates_with_the_example_text_encoder(tmp_path):
    """Strings go from the server to every client and back as relative spaces: the docs' text-table command."""
    words = {"good": "glad great good fine", "bad": "awful bad sad poor"}
    rows = [f"{i},{words[label]} {i},{label}" for i in range(60) for label in (("good", "bad")[i % 2],)]
    (tmp_path / "reviews.csv").write_text("\n".join(["id,review,stars", *rows]) + "\n")
    dataset = f"csv:{tmp_path / 'reviews.csv'}:text=review:label=stars"
    options = ["--plugins", "text_encoder_plugin", "--encoder", "letters", "--dataset", dataset, "--split", "same-classes"]
    done = _run([sys.executable, "-m", "relatlas.server.cli", "run", *options, "--anchors", "8", *SMALL], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "runs" / "latest" / "results.json").read_text())
    assert results["status"] == "completed" and results["failures"] == [] and results["classes"] == ["bad", "good"]
    assert results["payload_bytes_per_client"] == 18 * 8 * 4 and results["merged_accuracy"] > 0.9
