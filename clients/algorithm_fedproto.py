"""FedProto's client (``--algorithm fedproto[:LAMBDA]``), as HtFLlib's ``clientProto``:
the loss is cross-entropy plus LAMBDA times the MSE between each embedding and the
global prototype of its class (classes without one pull nothing); the client sends
the mean embedding of each class, over every batch of the round's epochs.

HtFLlib trains with SGD; here the optimiser is relatlas's (Adam, ``learning-rate``),
so that every algorithm of a run trains its clients alike.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict
from torch import Tensor, nn

from relatlas.aggregation.prototypes import class_means
from relatlas.clients.algorithm_client import ALGORITHM, algorithm_client_app, train_stats
from relatlas.clients.models import Classifier
from relatlas.clients.task import Task
from relatlas.clients.text_encoders import fit_to_inputs
from relatlas.clients.training import SeededBatches, TrainConfig, _epoch, _to, device_for_worker
from relatlas.registry import split_spec

PROTOTYPES, COUNTS, HELD = "prototypes", "counts", "held"
DEFAULT_WEIGHT = 1.0  # HtFLlib's default --lamda


def prototype_weight(algorithm: str) -> float:
    """LAMBDA of ``fedproto:LAMBDA`` (``DEFAULT_WEIGHT`` if not given); a ``ValueError`` in one line if it is no weight."""
    argument = split_spec(algorithm)[1]
    if not argument:
        return DEFAULT_WEIGHT
    try:
        weight = float(argument)
    except ValueError:
        weight = math.nan
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"fedproto:LAMBDA takes a finite weight of 0 or more; got {argument!r}")
    return weight


def fit_with_prototypes(
    model: Classifier, x: np.ndarray, y: np.ndarray, train: TrainConfig, weight: float, global_prototypes: Tensor | None,
    held: Tensor | None,
) -> tuple[dict[str, float], Tensor, Tensor]:  # fmt: skip
    """Train ``model`` (Adam, the seeded batches of ``fit``) on cross-entropy plus
    ``weight`` times FedProto's prototype MSE; return ``fit``'s statistics, the
    client's class prototypes ``[C, d]`` and the embeddings behind each ``[C]``."""
    fit_to_inputs(model, x)
    device = device_for_worker()
    model.to(device).train()
    batches = SeededBatches(len(y), train.batch_size, torch.Generator().manual_seed(train.seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate)
    cross_entropy, mse = nn.CrossEntropyLoss(), nn.MSELoss()
    num_classes, width = model.head.out_features, model.head.in_features
    sums, counts = torch.zeros(num_classes, width), torch.zeros(num_classes, dtype=torch.int64)
    loss_sum, correct = 0.0, 0
    for _ in range(train.epochs):
        loss_sum, correct = 0.0, 0
        for xb, yb in _epoch(x, y, batches, train.workers):
            xb, yb = _to(xb, device), yb.to(device)
            embedded = model.embedder(xb)
            logits = model.head(embedded)
            loss = cross_entropy(logits, yb)
            if global_prototypes is not None and held is not None:
                target = embedded.detach().clone()  # a row of a class without a global prototype pulls nothing
                pulled = held.to(device)[yb]
                target[pulled] = global_prototypes.to(device)[yb[pulled]]
                loss = loss + weight * mse(target, embedded)
            sums.index_add_(0, yb.cpu(), embedded.detach().cpu())
            counts += torch.bincount(yb.cpu(), minlength=num_classes)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(dim=1) == yb).sum())
    model.eval()
    stats = {"train_loss": loss_sum / max(1, len(y)), "train_accuracy": correct / max(1, len(y))}
    return stats, class_means(sums, counts), counts


def fedproto_step(
    model: Classifier, x: np.ndarray, y: np.ndarray, train: TrainConfig, content: RecordDict, task: Task
) -> tuple[dict[str, float], dict[str, ArrayRecord]]:
    """Train towards the global prototypes the server sent (none in round 1), send the client's own."""
    received = content.get(ALGORITHM)
    prototypes = held = None
    if received is not None and PROTOTYPES in received:
        prototypes = torch.from_numpy(received[PROTOTYPES].numpy().astype(np.float32))
        held = torch.from_numpy(received[HELD].numpy() > 0)
    stats, own, counts = fit_with_prototypes(model, x, y, train, prototype_weight(task.runtime.algorithm), prototypes, held)
    record = ArrayRecord({PROTOTYPES: Array(own.numpy()), COUNTS: Array(counts.numpy())})
    return train_stats(stats), {ALGORITHM: record}


app = algorithm_client_app(fedproto_step)
