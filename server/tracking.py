"""MLflow tracking and the run's output folder."""

from __future__ import annotations

import json
import math
import os
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from relatlas.library_noise import quiet_library_noise
from relatlas.safe_files import check_private_dir, create_private_file, private_dir, write_text_atomic
from relatlas.server.checkpoint import CHECKPOINT_DIR
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.interruption import Interrupted


@contextmanager
def mlflow_run(config: RunConfig, run_id: str | None = None) -> Iterator[str]:
    """Start an MLflow run with the config as params, or continue run ``run_id`` (a
    resumed run); yields its id. The run ends KILLED if the body is interrupted by a
    signal, FAILED if it raises anything else, FINISHED otherwise."""
    use_tracking(config.tracking_uri, config.experiment)
    name = f"{config.dataset}-{config.split}-{config.aggregation}-seed{config.seed}"
    if config.scenario == "continual":
        name = f"{config.dataset}-continual-{config.strategy}-{config.regularizer}-b{config.buffer}-seed{config.seed}"
    parent = config.parent_run or None
    with mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=name, parent_run_id=parent) as run:
        if run_id:
            mlflow.set_tag("resumed_from", config.resume)
        else:
            mlflow.log_params(config.to_mapping())
        try:
            yield run.info.run_id
        except Interrupted:
            mlflow.end_run("KILLED")
            raise


def use_tracking(tracking_uri: str, experiment: str) -> None:
    """Point MLflow at the store and the experiment. A new experiment in a SQLite
    store keeps its artifacts beside the database file (``mlartifacts/``), not in
    ``./mlruns`` of wherever the process happens to run."""
    quiet_library_noise()  # SQLAlchemy's deprecation, raised as MLflow's store loads below
    mlflow.set_tracking_uri(tracking_uri)
    store = Path(tracking_uri.removeprefix("sqlite:///"))
    if tracking_uri.startswith("sqlite:///") and store.parent.is_dir():
        create_private_file(store)  # a new store, 0600 (MLflow would make it 0644); MLflow fills the empty file
    if tracking_uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
        folder = Path(tracking_uri.removeprefix("sqlite:///")).absolute().parent / "mlartifacts"
        try:
            mlflow.create_experiment(experiment, artifact_location=folder.as_uri())
        except MlflowException:
            pass  # a parallel trial created it first
    mlflow.set_experiment(experiment)


REACH_SECONDS = 5  # how long the check waits for a tracking server (MLflow takes whole seconds)
# MLflow reads these at each HTTP call: within the check they give up after REACH_SECONDS and do not retry
BOUNDED_REQUESTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(REACH_SECONDS), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
STORE_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql")  # MLflow's database and server stores


def check_outputs(out_dir: Path, tracking_uri: str) -> None:
    """Refuse, before anything trains, an ``out-dir`` that cannot be written, is a link
    or may be written by others (``relatlas/safe_files.py``), and a tracking store
    that MLflow cannot use: a scheme it has no store for, a SQLite file whose folder
    cannot be written, a server or database that does not answer an MLflow call
    within ``REACH_SECONDS`` (any TCP server answers a connection; only MLflow
    answers its API)."""
    existing = next(folder for folder in (out_dir.absolute(), *out_dir.absolute().parents) if folder.exists())
    try:  # a folder made and removed where out-dir will be made: nothing is left behind
        os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as err:
        raise ConfigError(f"out-dir {out_dir} cannot be written: {existing}: {err.strerror or err}") from None
    for folder in (out_dir, out_dir / CHECKPOINT_DIR):
        if os.path.lexists(folder):
            check_private_dir(folder)  # a link, or a folder others may write to: refused before anything runs
    scheme = urllib.parse.urlparse(tracking_uri).scheme
    if scheme not in STORE_SCHEMES:
        raise ConfigError(
            f"tracking-uri {tracking_uri}: MLflow has no tracking store for {scheme or 'a plain path'!r} here; "
            "use sqlite:///FILE or the http(s):// address of an MLflow server"
        )
    if scheme == "sqlite":  # checked without opening it: MLflow would create the database
        folder = Path(tracking_uri.removeprefix("sqlite:///")).absolute().parent
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"tracking store {tracking_uri}: its folder {folder} is missing or cannot be written")
        return
    with mock.patch.dict(os.environ, BOUNDED_REQUESTS):  # MLflow's HTTP calls: no 120 s wait, no retries
        try:
            MlflowClient(tracking_uri).search_experiments(max_results=1)
        except Exception as err:  # noqa: BLE001 - MLflow's, requests', a missing driver's: each is one line here
            reason = f"{type(err).__name__}: {str(err).split('. Response body')[0].splitlines()[0][:300]}"
            raise ConfigError(f"tracking store {tracking_uri} does not answer as MLflow: {reason}") from None


def absolute_tracking_uri(uri: str) -> str:
    """A relative ``sqlite:///`` store resolved against this directory (for a
    server that runs elsewhere); any other URI as given."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix) :]).resolve())
    return uri


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numbers as MLflow metrics; lists of numbers become one metric per client, or,
    for the merged space's row (``experience_accuracy``), one per experience (lists
    of lists, the clients' per-experience rows, stay in ``results.json``)."""
    flat: dict[str, float] = {}
    partitions = metrics.get("client_partitions", [])
    for key, value in metrics.items():
        if key in ("client_partitions", "sampled_partitions"):
            continue
        if key == "experience_accuracy":
            flat.update({f"merged_accuracy/experience{j}": float(v) for j, v in enumerate(value) if _number(v)})
        elif isinstance(value, list):
            flat.update({f"{key}/client{p}": float(v) for p, v in zip(partitions, value) if _number(v)})
        elif _number(value):
            flat[key] = float(value)
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def strict_json(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None``: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: strict_json(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_results(out_dir: Path, results: Mapping[str, Any]) -> Path:
    """Write ``results.json`` atomically, so a crash never leaves half a file, 0600 in a
    private ``out_dir`` (``relatlas/safe_files.py``); strict JSON, which every parser reads."""
    path = private_dir(out_dir) / "results.json"
    return write_text_atomic(path, json.dumps(strict_json(results), indent=2, sort_keys=True, allow_nan=False))
