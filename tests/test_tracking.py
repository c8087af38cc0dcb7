import math
from pathlib import Path

import mlflow

from relatlas.server.tracking import scalar_metrics, strict_json, use_tracking


def test_lists_become_per_client_metrics_and_the_merged_row_per_experience_metrics():
    metrics = {
        "merged_accuracy": 0.8, "client_partitions": [0, 2], "client_accuracy": [0.7, None],
        "experience_accuracy": [0.9, 0.7], "client_experience_accuracy": [[0.9], [0.8]], "train_seconds": math.inf,
    }  # fmt: skip
    assert scalar_metrics(metrics) == {
        "merged_accuracy": 0.8, "client_accuracy/client0": 0.7,
        "merged_accuracy/experience0": 0.9, "merged_accuracy/experience1": 0.7,
    }  # fmt: skip


def test_results_are_strict_json():
    assert strict_json({"a": [1.0, math.nan, {"b": -math.inf}], "c": "x"}) == {"a": [1.0, None, {"b": None}], "c": "x"}


def test_a_new_experiment_keeps_its_artifacts_beside_the_sqlite_store(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "store").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    use_tracking(f"sqlite:///{tmp_path}/store/mlflow.db", "artefacts")
    with mlflow.start_run() as run:
        mlflow.log_text("x", "note.txt")
    assert (tmp_path / "store" / "mlartifacts").is_dir() and not (tmp_path / "elsewhere" / "mlruns").exists()
    assert run.info.artifact_uri.startswith((tmp_path / "store" / "mlartifacts").as_uri())


def test_the_default_store_and_its_artifacts_are_ignored_by_git():
    """``make demo`` runs in the checkout: the default store (``sqlite:///mlflow.db``)
    and the artifacts kept beside it must not show as untracked files."""
    from relatlas.server.config import RunConfig

    assert RunConfig().tracking_uri == "sqlite:///mlflow.db"
    ignored = (Path(__file__).resolve().parent.parent / ".gitignore").read_text().split()
    assert "mlflow.db" in ignored and "mlartifacts/" in ignored
