"""FedAvg's client (``--algorithm fedavg``): start the round from the global
weights the server sent (Flower's ``FedAvg`` puts them in record ``arrays``),
train on the own data, send the weights back in the same record."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, RecordDict

from relatlas.clients.algorithm_client import algorithm_client_app, train_stats
from relatlas.clients.models import Classifier
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig, fit

WEIGHTS = "arrays"  # the record name of Flower's FedAvg (its ``arrayrecord_key``), both ways


def fedavg_step(
    model: Classifier, x: np.ndarray, y: np.ndarray, train: TrainConfig, content: RecordDict, task: Task
) -> tuple[dict[str, float], dict[str, ArrayRecord]]:
    """Load the global model, train ``epochs`` epochs of cross-entropy, send the weights."""
    if WEIGHTS in content:
        model.load_state_dict(content[WEIGHTS].to_torch_state_dict())
    stats = fit(model, x, y, train)
    return train_stats(stats), {WEIGHTS: ArrayRecord(model.state_dict())}


app = algorithm_client_app(fedavg_step)
