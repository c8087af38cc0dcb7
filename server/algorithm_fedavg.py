"""``--algorithm fedavg``: every client trains the same architecture from the global
weights; Flower's own ``FedAvg`` strategy (Message API) picks the nodes, builds
the weights' records and averages the replies by their training samples. A run
whose clients have different encoders is refused: there is nothing to average.

``global_accuracy``: the averaged model's, on the test part of the evaluation samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from relatlas.clients.algorithm_fedavg import WEIGHTS
from relatlas.clients.algorithm_fedavg import app as client_app
from relatlas.clients.models import build_classifier
from relatlas.clients.protocol import METRICS, ReplyError
from relatlas.clients.training import derive_seed, predict
from relatlas.encoder_spec import EncoderSpec
from relatlas.server.algorithm_strategy import Records, baseline_server_app, check_baseline, held_out_accuracy
from relatlas.server.algorithms import FederatedAlgorithm
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.run_setup import RunSetup

GLOBAL_MODEL_ID = 30_000  # seed stream of the global model's first weights, apart from the clients'


def check_one_architecture(config: RunConfig) -> None:
    """The baselines' conditions, and one encoder for every client."""
    check_baseline(config)
    specs = list(dict.fromkeys(str(spec) for spec in EncoderSpec.parse_list(config.encoder)))
    if len(specs) > 1:
        raise ConfigError(
            f"algorithm fedavg averages one architecture, but encoder gives the clients {len(specs)} ({', '.join(specs)}): "
            "give one encoder, or run fedproto or relatlas, which take different ones"
        )


class FedAvgServer:
    """Flower's ``FedAvg`` over the global model's weights (record ``arrays``)."""

    reply_records: tuple[str, ...] = (WEIGHTS,)

    def __init__(self, config: RunConfig, setup: RunSetup) -> None:
        self.setup = setup
        self.strategy = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_available_nodes=config.min_clients)
        dataset = setup.dataset
        self.model = build_classifier(
            dataset.input_shape, dataset.num_classes, embedding_dim=config.embedding_dim,
            encoder=EncoderSpec.for_client(config.encoder, 0), seed=derive_seed(config.seed, GLOBAL_MODEL_ID),
        )  # fmt: skip
        self.weights = ArrayRecord(self.model.state_dict())

    def configure(self, server_round: int, nodes: list[int], grid: Grid) -> dict[int, Records]:
        """The global weights, in the messages ``FedAvg.configure_train`` builds (and its ``config`` record)."""
        messages = self.strategy.configure_train(server_round, self.weights, ConfigRecord(), grid)
        chosen = [message for message in messages if message.metadata.dst_node_id in nodes]
        return {message.metadata.dst_node_id: dict(message.content.items()) for message in chosen}

    def check_reply(self, records: Mapping[str, ArrayRecord]) -> None:
        """The weights of the global model's every tensor, of its shape, finite."""
        weights = records[WEIGHTS]
        if set(weights.keys()) != set(self.weights.keys()):
            extra = sorted(set(weights.keys()) ^ set(self.weights.keys()))[:5]
            raise ReplyError(f"{WEIGHTS} differ from the global model's tensors in {extra}")
        for name, array in weights.items():
            values = array.numpy()
            if tuple(values.shape) != tuple(self.weights[name].shape) or not np.isfinite(values).all():
                raise ReplyError(f"{WEIGHTS}[{name!r}] is not a finite array of shape {tuple(self.weights[name].shape)}")

    def aggregate(self, server_round: int, replies: Mapping[int, Mapping[str, ArrayRecord]], sizes: Mapping[int, int]) -> dict:
        """``FedAvg.aggregate_train`` of the replies' weights, weighted by ``num-examples``; score the new global model."""
        messages = [
            Message(RecordDict({WEIGHTS: records[WEIGHTS], METRICS: MetricRecord({"num-examples": sizes[partition]})}),
                    dst_node_id=0, message_type=MessageType.TRAIN)
            for partition, records in replies.items()
        ]  # fmt: skip
        averaged, _ = self.strategy.aggregate_train(server_round, messages)
        if averaged is not None:
            self.weights = averaged
            self.model.load_state_dict(averaged.to_torch_state_dict())
        predictions = predict(self.model, self.setup.samples).argmax(dim=1).numpy()
        return {"global_accuracy": held_out_accuracy(self.setup, predictions)}


fedavg = FederatedAlgorithm(client_app, baseline_server_app(FedAvgServer), check_one_architecture)
