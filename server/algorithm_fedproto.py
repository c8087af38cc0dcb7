"""``--algorithm fedproto[:LAMBDA]``: FedProto as HtFLlib runs it. Each round the
clients send their class prototypes (mean embeddings), the server averages them
per class over the clients holding the class (``aggregation/prototypes.py``) and
sends the global prototypes back; a client trains with cross-entropy plus LAMBDA
(default 1, HtFLlib's) times the MSE to its class's global prototype.

Encoders may differ, but a prototype has one width: every client's embedding width
must be the same (``embedding-dim``, with no encoder's ``dim=`` option setting another).

``client_prototype_accuracy``: each client's embeddings of the evaluation samples
classed by the nearest global prototype of the round (HtFLlib's inference);
``client_model_accuracy``, as for every algorithm, by its own head.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from flwr.serverapp import Grid

from relatlas.aggregation.prototypes import average_prototypes, nearest_prototype
from relatlas.clients.algorithm_client import ALGORITHM, EMBEDDINGS
from relatlas.clients.algorithm_fedproto import COUNTS, HELD, PROTOTYPES, prototype_weight
from relatlas.clients.algorithm_fedproto import app as client_app
from relatlas.clients.protocol import ReplyError, float_array
from relatlas.encoder_spec import EncoderSpec
from relatlas.server.algorithm_strategy import Records, baseline_server_app, check_baseline, held_out_accuracy
from relatlas.server.algorithms import FederatedAlgorithm
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.run_setup import RunSetup


def check_one_width(config: RunConfig) -> None:
    """The baselines' conditions, a prototype weight, and one embedding width for every client."""
    check_baseline(config)
    prototype_weight(config.algorithm)
    widths = sorted({spec.width(config.embedding_dim) for spec in EncoderSpec.parse_list(config.encoder)})
    if len(widths) > 1:
        raise ConfigError(
            f"algorithm fedproto averages prototypes of one width, but the encoders embed in {widths} dimensions: "
            f"drop their dim= options, so that embedding-dim ({config.embedding_dim}) sets every width"
        )


class FedProtoServer:
    """The global prototypes: the per-class mean of the clients' (``average_prototypes``)."""

    reply_records: tuple[str, ...] = ()

    def __init__(self, config: RunConfig, setup: RunSetup) -> None:
        self.setup = setup
        self.width = EncoderSpec.for_client(config.encoder, 0).width(config.embedding_dim)
        self.prototypes: torch.Tensor | None = None  # [C, width], none before the first round's replies
        self.held: torch.Tensor | None = None  # [C] bool: the classes some client holds

    def configure(self, server_round: int, nodes: list[int], grid: Grid) -> dict[int, Records]:
        """The global prototypes, to every node (none in round 1)."""
        if self.prototypes is None or self.held is None:
            return {}
        arrays = {PROTOTYPES: Array(self.prototypes.numpy()), HELD: Array(self.held.numpy().astype(np.uint8))}
        return {node: {ALGORITHM: ArrayRecord(arrays)} for node in nodes}

    def check_reply(self, records: Mapping[str, ArrayRecord]) -> None:
        """Finite ``[C, width]`` prototypes and ``[C]`` whole, non-negative counts."""
        record, classes = records[ALGORITHM], self.setup.dataset.num_classes
        prototypes = float_array(record, PROTOTYPES, ALGORITHM)
        if prototypes.shape != (classes, self.width):
            raise ReplyError(f"{PROTOTYPES} have shape {prototypes.shape}; expected ({classes}, {self.width})")
        if record[EMBEDDINGS].shape[1] != self.width:
            raise ReplyError(f"{EMBEDDINGS} are {record[EMBEDDINGS].shape[1]} wide; the prototypes {self.width}")
        counts = record[COUNTS].numpy() if COUNTS in record else np.empty(0)
        if counts.shape != (classes,) or counts.dtype.kind not in "iu" or (counts < 0).any():
            raise ReplyError(f"{COUNTS} must be {classes} whole numbers of 0 or more, one per class")

    def aggregate(self, server_round: int, replies: Mapping[int, Mapping[str, ArrayRecord]], sizes: Mapping[int, int]) -> dict:
        """Average the prototypes; class each client's embeddings by the nearest of them."""
        records = [replies[partition][ALGORITHM] for partition in replies]
        prototypes = torch.stack([torch.from_numpy(r[PROTOTYPES].numpy().astype(np.float32)) for r in records])
        counts = torch.stack([torch.from_numpy(r[COUNTS].numpy().astype(np.int64)) for r in records])
        self.prototypes, self.held = average_prototypes(prototypes, counts)
        accuracies = []
        for record in records:
            embeddings = torch.from_numpy(record[EMBEDDINGS].numpy().astype(np.float32))
            predictions = nearest_prototype(embeddings, self.prototypes, self.held).numpy()
            accuracies.append(held_out_accuracy(self.setup, predictions))
        return {"client_prototype_accuracy": accuracies, "prototype_classes": int(self.held.sum())}


fedproto = FederatedAlgorithm(client_app, baseline_server_app(FedProtoServer), check_one_width)
