"""Local training only: each client trains its own model on its own data and
receives nothing (``--algorithm local``); relatlas's clients train exactly so."""

from __future__ import annotations

import numpy as np
from flwr.app import ArrayRecord, RecordDict

from relatlas.clients.algorithm_client import algorithm_client_app, train_stats
from relatlas.clients.models import Classifier
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig, fit


def local_step(
    model: Classifier, x: np.ndarray, y: np.ndarray, train: TrainConfig, content: RecordDict, task: Task
) -> tuple[dict[str, float], dict[str, ArrayRecord]]:
    """``epochs`` more epochs of cross-entropy on the client's own data."""
    return train_stats(fit(model, x, y, train)), {}


app = algorithm_client_app(local_step)
