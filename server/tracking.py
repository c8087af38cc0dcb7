"""MLflow tracking and the run's output folder."""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException

from relatlas.library_noise import quiet_library_noise
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
    if tracking_uri.startswith("sqlite:///") and mlflow.get_experiment_by_name(experiment) is None:
        folder = Path(tracking_uri.removeprefix("sqlite:///")).absolute().parent / "mlartifacts"
        try:
            mlflow.create_experiment(experiment, artifact_location=folder.as_uri())
        except MlflowException:
            pass  # a parallel trial created it first
    mlflow.set_experiment(experiment)


REACH_SECONDS = 5.0  # how long the check waits for a tracking server


def check_outputs(out_dir: Path, tracking_uri: str) -> None:
    """Refuse, before anything trains, an ``out-dir`` that cannot be written and a
    tracking store that cannot be reached (a server within ``REACH_SECONDS``) or
    written (a SQLite file's folder)."""
    existing = next(folder for folder in (out_dir.absolute(), *out_dir.absolute().parents) if folder.exists())
    try:  # a folder made and removed where out-dir will be made: nothing is left behind
        os.rmdir(tempfile.mkdtemp(dir=existing))
    except OSError as err:
        raise ConfigError(f"out-dir {out_dir} cannot be written: {existing}: {err.strerror or err}") from None
    address = urllib.parse.urlparse(tracking_uri)
    if address.scheme in ("http", "https"):
        port = address.port or (443 if address.scheme == "https" else 80)
        try:
            socket.create_connection((address.hostname or "", port), timeout=REACH_SECONDS).close()
        except OSError as err:
            raise ConfigError(f"tracking server {tracking_uri} cannot be reached: {err.strerror or err}") from None
    elif address.scheme == "sqlite":
        folder = Path(tracking_uri.removeprefix("sqlite:///")).absolute().parent
        if not os.access(folder, os.W_OK):
            raise ConfigError(f"tracking store {tracking_uri}: its folder {folder} is missing or cannot be written")


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
        if key == "client_partitions":
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
    """Write ``results.json`` atomically, so a crash never leaves half a file; strict
    JSON, which every parser reads."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(strict_json(results), indent=2, sort_keys=True, allow_nan=False))
    partial.replace(path)
    return path
