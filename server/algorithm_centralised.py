"""``--algorithm centralised``: the centralised reference as an algorithm of its own:
one model trained on the union of every client's training data, ``epochs`` per
round, with the first client's encoder (``server/centralized.py``). No client trains.

Scored as the others: ``global_accuracy`` (its head, on the test part of the
evaluation samples) and ``centralized_accuracy`` (its relative space's probe, the
figure a relatlas run reports beside its merge).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import mlflow
from flwr.app import Context
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from relatlas.aggregation.aggregators import aggregate
from relatlas.clients.training import predict
from relatlas.server.algorithm_strategy import check_baseline, held_out_accuracy
from relatlas.server.algorithms import FederatedAlgorithm
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.interruption import Interrupted
from relatlas.server.run_setup import RunSetup
from relatlas.server.tracking import mlflow_run, scalar_metrics, write_results


def check_centralised(config: RunConfig) -> None:
    """The baselines' conditions, and the clients' data in the server's hands (no ``client-data``)."""
    check_baseline(config)
    if config.client_data:
        raise ConfigError("algorithm centralised trains on the clients' data; with client-data it stays on the clients")


def round_metrics(setup: RunSetup, round_number: int) -> dict[str, Any]:
    """Train the reference one round; score its head and its relative space."""
    central = setup.central
    assert central is not None  # RunSetup builds it: simulation baselines on, no client-data
    central.train_round(round_number)
    predictions = predict(central.model, setup.samples).argmax(dim=1).numpy()
    space = aggregate(setup.config.aggregation, [central.spaces(setup.anchors, setup.samples, setup.expected.similarities)])
    return {
        "round": round_number,
        "algorithm": setup.config.algorithm,
        "global_accuracy": held_out_accuracy(setup, predictions),
        "centralized_accuracy": setup.probes.accuracy(space),
    }


def run_centralised(config: RunConfig) -> dict[str, Any]:
    """Every round of the reference, logged to MLflow and written to ``results.json`` as relatlas's rounds are."""
    started = time.perf_counter()
    setup = RunSetup.prepare(dataclasses.replace(config, simulation_baselines=True))  # the reference is built then
    out_dir = Path(config.out_dir)
    results: dict[str, Any] = {"status": "running", "config": config.to_mapping(), "rounds": [], "failures": []}
    with mlflow_run(config) as run_id:
        results["mlflow_run_id"] = run_id
        try:
            for round_number in range(1, config.num_rounds + 1):
                metrics = round_metrics(setup, round_number)
                results["rounds"].append(metrics)
                mlflow.log_metrics(scalar_metrics(metrics), step=round_number)
                write_results(out_dir, results)
            results["status"] = "completed"
        except Interrupted as err:
            results |= {"status": "interrupted", "error": str(err)}
            raise
        except Exception as err:
            results |= {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            raise
        finally:
            if results["rounds"]:
                results |= results["rounds"][-1]
            results["wall_seconds"] = time.perf_counter() - started
            mlflow.log_artifact(str(write_results(out_dir, results)))
    return results


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    run_centralised(RunConfig.from_mapping(context.run_config))


centralised = FederatedAlgorithm(ClientApp(), server_app, check_centralised)  # its SuperNodes get no message
