"""``--algorithm centralised``: the centralised reference as an algorithm of its own:
one model trained on the union of every client's training data, ``epochs`` per
round, with the first client's encoder (``server/centralized.py``). No client trains.

Scored as the others: ``global_accuracy`` (its head, on the test part of the
evaluation samples) and ``centralized_accuracy`` (its relative space's probe, the
figure a relatlas run reports beside its merge).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from relatlas.aggregation.aggregators import aggregate
from relatlas.clients.training import predict
from relatlas.server.algorithm_strategy import check_baseline, held_out_accuracy
from relatlas.server.algorithms import FederatedAlgorithm
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.federation import run_federation
from relatlas.server.run_setup import RoundOutcome, RunSetup
from relatlas.server.strategy import RelativeStrategy
from relatlas.server.tracking import scalar_metrics


def check_centralised(config: RunConfig) -> None:
    """The baselines' conditions, and the clients' data in the server's hands (no ``client-data``)."""
    check_baseline(config)
    if config.client_data:
        raise ConfigError("algorithm centralised trains on the clients' data; with client-data it stays on the clients")


def round_metrics(setup: RunSetup, round_number: int) -> dict[str, Any]:
    """Score the reference's head and its relative space after ``round_number``."""
    central = setup.central
    assert central is not None  # RunSetup builds it: simulation baselines on, no client-data
    predictions = predict(central.model, setup.samples).argmax(dim=1).numpy()
    space = aggregate(setup.config.aggregation, [central.spaces(setup.anchors, setup.samples, setup.expected.similarities)])
    return {
        "round": round_number,
        "algorithm": setup.config.algorithm,
        "global_accuracy": held_out_accuracy(setup, predictions),
        "centralized_accuracy": setup.probes.accuracy(space),
    }


class CentralisedStrategy(RelativeStrategy):
    """Rounds that send nothing: the reference trains while relatlas's loop waits for
    no reply (``train_reference``), then is scored; checkpoints, MLflow and
    ``results.json`` as in every run (``run_federation``)."""

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        return []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        self.train_reference(server_round)
        metrics = round_metrics(self.setup, server_round)
        self.rounds.append(metrics)
        self.outcome = RoundOutcome(metrics, None, None)
        return None, MetricRecord(scalar_metrics(metrics))


server_app = ServerApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    config = RunConfig.from_mapping(context.run_config)
    setup = RunSetup.prepare(dataclasses.replace(config, simulation_baselines=True))  # the reference is built then
    run_federation(grid, config, CentralisedStrategy(config, setup))


centralised = FederatedAlgorithm(ClientApp(), server_app, check_centralised)  # its SuperNodes get no message
