"""Class prototypes, FedProto's currency (Tan et al., AAAI 2022, as HtFLlib runs it):
a client's mean embedding of each class it holds; the server's per-class mean of
the clients' prototypes; and inference by the nearest prototype.

Pure tensor functions: the FedProto baseline (``server/algorithm_fedproto.py``,
``clients/algorithm_fedproto.py``) moves them over Flower messages.
"""

from __future__ import annotations

import torch
from torch import Tensor


def class_means(sums: Tensor, counts: Tensor) -> Tensor:
    """``[C, d]`` per-class means of summed embeddings (``counts [C]``); a class with no sample is zeros."""
    return sums / counts.clamp(min=1).unsqueeze(1).to(sums.dtype)


def average_prototypes(prototypes: Tensor, counts: Tensor) -> tuple[Tensor, Tensor]:
    """The global prototypes ``[C, d]`` and which classes have one (``[C]`` bool).

    ``prototypes [K, C, d]``: each of K clients' class prototypes; ``counts [K, C]``:
    the samples behind each (0: the client does not hold the class, and its row is
    ignored). As HtFLlib's ``proto_aggregation``, a class's global prototype is the
    plain mean over the clients holding it, not weighted by their sample counts
    (FedProto's paper weights by counts; HtFLlib, the benchmark compared with, does not).
    """
    if prototypes.ndim != 3 or counts.shape != prototypes.shape[:2]:
        raise ValueError(f"prototypes [K, C, d] and counts [K, C] expected; got {list(prototypes.shape)}, {list(counts.shape)}")
    holds = (counts > 0).to(prototypes.dtype)  # [K, C]
    holders = holds.sum(dim=0)  # [C]
    summed = (prototypes * holds.unsqueeze(2)).sum(dim=0)
    return class_means(summed, holders), holders > 0


def nearest_prototype(embeddings: Tensor, prototypes: Tensor, held: Tensor) -> Tensor:
    """``[N]`` the class of each embedding's nearest prototype by mean squared error
    (HtFLlib's ``test_metrics``), among the classes that have one (``held [C]``)."""
    if not bool(held.any()):
        raise ValueError("no class has a prototype")
    distances = torch.cdist(embeddings.double(), prototypes.double()).pow(2) / embeddings.shape[1]
    distances[:, ~held] = torch.inf
    return distances.argmin(dim=1)
