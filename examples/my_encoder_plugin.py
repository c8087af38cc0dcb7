"""A user's plugin: an encoder and an aggregation of their own, registered by
importing this module, with no change to relatlas.

    PYTHONPATH=examples relatlas run --plugins my_encoder_plugin --encoder wide-mlp --aggregation rank-mean

``--plugins`` (the ``plugins`` run-config key) makes every process import it
before it reads the config: the CLI, the ServerApp, and each ClientApp on its
Ray worker or SuperNode, which therefore need this folder on their PYTHONPATH.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from relatlas.aggregation.aggregators import ClientSpace, register_aggregation
from relatlas.aggregation.merge import mean_merge
from relatlas.registries import ENCODERS


@ENCODERS.register("wide-mlp")
def wide_mlp(input_shape: tuple[int, ...], embedding_dim: int, **options: object) -> nn.Module:
    """Two wide hidden layers: ``(input_shape, embedding_dim, **options) -> nn.Module``."""
    width = int(options.get("width", 512))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), width), nn.ReLU(),
        nn.Linear(width, width), nn.ReLU(),
        nn.Linear(width, embedding_dim),
    )  # fmt: skip


@register_aggregation("rank-mean", ("cosine",))
def rank_mean(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """The mean of each client's cosine rows turned into ranks in [0, 1]: a client
    whose cosines are all squeezed together counts as much as one whose are spread."""
    ranks = [_row_ranks(space["cosine"]) for space in spaces]
    return mean_merge(ranks, weights=weights, masks=masks)


def _row_ranks(rows: Tensor) -> Tensor:
    """Each entry's rank within its row, scaled to [0, 1]."""
    ranks = rows.argsort(dim=1).argsort(dim=1).to(torch.float32)
    return ranks / max(rows.shape[1] - 1, 1)
