import argparse
import dataclasses
import http.server
import subprocess
import sys
import threading

import numpy as np
import pytest

from relatlas.server.cli_lazy import LazyOptionsParser
from relatlas.server.cli_report import results_table
from relatlas.server.config import RunConfig
from relatlas.server.option_help import HELP


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--shared-classes", "10"], "shared classes S=10 must be in [0, 9]"),
        (["--clients", "5", "--shared-classes", "8"], "5 clients with 1 novel classes each need 13 classes"),
        (["--rounds", "0"], "rounds must be positive"),
        (["--clients", "5", "--aggregation", "trimmed-mean", "--max-hostile", "3"], "trimmed-mean withstands 2 of 5 and needs 7"),
        (
            ["--aggregation", "mode"],
            "aggregation must be one of mean, product, product-sum, product-learned, product-weighted, concat, median, "
            "trimmed-mean, krum, multi-krum",
        ),
        (["--scenario", "continual", "--experiences", "11"], "has 1 to 10 experiences, got 11"),
        (["--strategy", "naive", "--regularizer", "casper"], "strategy naive has none"),
        (["--client-gpus", "0.5"], "num-gpus 0.5 per client, but no node of the Ray cluster has a GPU"),
        (["--num-cpus", "100"], "num-cpus 100 per client, but the largest Ray node has"),
        (["--ray-address", "127.0.0.1:1"], "ray-address 127.0.0.1:1: no Ray cluster answers at 127.0.0.1:1 (UNAVAILABLE"),
        (["--payload-noise", "-0.1"], "payload-noise must be zero or more"),
        (["--resume", "nowhere"], "resume: nowhere holds no checkpoint"),
        (["--anchors", "100000"], "asked for 100000 anchors but only 503 samples of classes [2, 4, 6, 7] are available"),
        (["--clients", "10000", "--split", "same-classes"], "clients 0, 1, 2, 3, 4 and 8,875 more received no training"),
        (["--seed", str(2**32)], "seed must be in 0..4294967295"),
        (["--out", "/proc/relatlas"], "out-dir /proc/relatlas cannot be written: /proc: "),
        (["--tracking-uri", "http://127.0.0.1:1"], "tracking store http://127.0.0.1:1 does not answer as MLflow: MlflowExc"),
        (["--tracking-uri", "ftp://x"], "tracking-uri ftp://x: MLflow has no tracking store for 'ftp' here; use sqlite:///"),
        (["--out", "o" * 100_000], "out-dir has 100000 characters; at most 4096"),
        (["--dataset", f"npz:{'d' * 300}.npz"], "dataset has a part of 304 characters (ddddd"),
        (["--experiment", "e" * 100_000], "experiment has 100000 characters; at most 256"),
        (["--tracking-uri", "sqlite:////nonexistent/m.db"], "its folder /nonexistent is missing or cannot be written"),
        (["--dataset", "npz:gaps.npz"], "labels must be 0..C-1 with every class in y_train; found 3 classes (3, 7, 9)"),
        (["--dataset", "npz:one-per-class.npz"], "asked for 64 anchors but only 4 samples"),
        (["--plugins", "no_such_plugin"], "plugin module 'no_such_plugin' could not be imported: ModuleNotFoundError"),
        (["--encoder", "wide-mlp"], "encoder: unknown encoder 'wide-mlp' in 'wide-mlp'; registered: auto, mlp, cnn"),
        (["--encoder", "mlp,vgg"], "encoder: unknown encoder 'vgg' in 'vgg'; registered: auto, mlp, cnn, resnet8, resnet20"),
        (["--encoder", "mlp,cnn"], "encoder: the cnn encoder needs [C, H, W] images with H = W >= 28, got input shape (64,)"),
    ],
)
def test_bad_input_exits_with_one_line_before_anything_starts(tmp_path, args, message):
    """Each refusal also ends the process (the timeout): nothing it started outlives the line."""
    np.savez(tmp_path / "gaps.npz", X=np.random.rand(300, 8), y=np.repeat([3, 7, 9], 100))
    np.savez(tmp_path / "one-per-class.npz", X=np.random.rand(20, 8), y=np.arange(20) % 10)  # 1 per class in training
    done = subprocess.run(
        [sys.executable, "-m", "relatlas.server.cli", "run", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.startswith("relatlas: ") and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()


def test_a_tracking_server_that_is_not_mlflow_is_refused_before_anything_starts(tmp_path):
    class NotMlflow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_error(404)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotMlflow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        command = [sys.executable, "-m", "relatlas.server.cli", "run", "--tracking-uri", uri]
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
    assert done.returncode == 2 and not done.stdout and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"relatlas: tracking store {uri} does not answer as MLflow: MlflowException: ")
    assert "404" in done.stderr and not (tmp_path / "runs").exists()


def test_results_table_marks_the_owner_protocol_as_leaking_labels():
    results = {"config": {"aggregation": "mean", "dataset": "digits", "split": "shared-classes"}, "status": "completed"}
    results |= {"merged_accuracy": 0.8, "client_accuracy": [0.7, None], "owner_accuracy": 0.9, "owner_shuffled_accuracy": 0.9}
    results |= {"stitched_own_classes_accuracy": [0.8, 0.7], "stitched_other_classes_accuracy": [0.2, None]}
    labels, values = (column._cells for column in results_table(results).columns)
    assert "merged (mean, label-free)" in labels and "owner protocol (paper; leaks labels)" in labels
    assert "owner protocol, owners shuffled (control)" in labels
    assert values[labels.index("stitching, on the classes each client never saw")] == "0.200  -"


def _deploy(action: str, directory, *options: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "relatlas.server.cli", "deploy", action, "--dir", str(directory), *options]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_deploy_run_refuses_a_federation_that_is_not_up_in_one_line(tmp_path):
    done = _deploy("run", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"relatlas: no federation runs from {tmp_path}: `relatlas deploy up` first"
    assert _deploy("down", tmp_path).stdout.strip() == "stopped nothing"


def test_deploy_refuses_no_supernodes_and_a_malformed_process_record_in_one_line(tmp_path):
    done = _deploy("credentials", tmp_path / "certificates", "--supernodes", "-1")
    assert done.returncode == 2 and done.stderr.strip() == "relatlas: supernodes must be 1 to 256; got -1"
    assert not (tmp_path / "certificates").exists()
    (tmp_path / "processes.json").write_text("{not json")
    done = _deploy("down", tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith(f"relatlas: {tmp_path / 'processes.json'} is not a record of `relatlas deploy up`")


def test_state_clear_removes_every_run_folder_and_keeps_the_root(tmp_path):
    for run in ("0123456789abcdef", "fedcba9876543210"):
        (tmp_path / run / "partition-0").mkdir(parents=True)
        (tmp_path / run / "partition-0" / "round-1.pt").write_bytes(b"state")
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (tmp_path / "abcdef0123456789").symlink_to(elsewhere)  # planted: the link goes, its target stays
    command = [sys.executable, "-m", "relatlas.server.cli", "state", "clear", "--dir", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"removed the client state of 3 runs from {tmp_path}"
    assert tmp_path.is_dir() and not any(tmp_path.iterdir()) and elsewhere.is_dir()


def test_every_run_option_has_a_description_and_its_allowed_values():
    assert set(HELP) == {field.name.replace("_", "-") for field in dataclasses.fields(RunConfig)}
    usage = subprocess.run(
        [sys.executable, "-m", "relatlas.server.cli", "run", "--help"], capture_output=True, text=True, timeout=120
    )
    flat = " ".join(usage.stdout.split())
    aggregation = (
        "how the server merges the clients' relative spaces; "
        "one of mean, product, product-sum, product-learned, product-weighted, concat, median, trimmed-mean, krum, multi-krum"
    )
    assert f"--aggregation STR {aggregation} (default: 'mean')" in flat
    assert "--outlier-threshold FLOAT drop a client this many times" in flat


@pytest.mark.parametrize("command", [["-m", "relatlas.server.cli", "--help"], ["-m", "relatlas.server.cli", "run", "--help"],
                                     ["-m", "relatlas.server.cli", "bench", "--help"], ["-c", "import relatlas"]])  # fmt: skip
def test_help_and_import_start_without_the_heavy_libraries(command):
    done = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "relatlas" in imported and not imported & {"torch", "avalanche", "jax", "mlflow", "ray", "flwr", "numpy"}


def test_bench_perf_help_lists_its_options_without_the_heavy_libraries():
    """A suite's options read light defaults: its modules (torch, MLflow; Avalanche for the continual one) load when it runs."""
    command = [sys.executable, "-X", "importtime", "-m", "relatlas.server.cli", "bench", "perf", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "--overhead-turns" in done.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "relatlas" in imported and not imported & {"torch", "avalanche", "jax", "mlflow", "ray", "flwr", "numpy"}


def test_a_suite_adds_its_options_once_and_only_when_named():
    added = []

    def options(parser: argparse.ArgumentParser) -> None:
        added.append(parser.prog)
        parser.add_argument("--size", type=int, default=1)

    root = argparse.ArgumentParser(prog="bench")
    suites = root.add_subparsers(dest="suite", required=True, parser_class=LazyOptionsParser)
    for name in ("a", "b"):
        suites.add_parser(name, add_options=options)
    assert added == []
    assert root.parse_args(["a", "--size", "3"]).size == 3 and added == ["bench a"]
    assert "--size" in suites.choices["b"].format_help() and added == ["bench a", "bench b"]
    assert root.parse_args(["a"]).size == 1 and len(added) == 2
