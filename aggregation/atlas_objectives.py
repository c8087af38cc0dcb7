"""Atlas objectives: how a client is pulled towards the merged relative space of
the public pool (the atlas) the server sends back each round.

An objective is ``(own_rows, atlas_rows, **options) -> loss``: ``own_rows`` ``[B, D]``
are the client's relative rows of a batch of pool samples through its current
encoder (differentiable; the run's aggregation of this one client, so as wide as
the atlas), ``atlas_rows`` ``[B, D]`` the atlas's rows of the same samples. Options
every objective is called with, to use or ignore: ``embeddings`` ``[B, d]`` (the
client's own embeddings of the batch, differentiable) and ``logits`` ``[B, C]``
(its head's). A user's objective registers like the built-ins::

    from relatlas.registries import ATLAS_OBJECTIVES

    @ATLAS_OBJECTIVES.register("cosine-rows")
    def cosine_rows(own_rows, atlas_rows, **options):
        return 1 - torch.nn.functional.cosine_similarity(own_rows, atlas_rows).mean()

Pulling the rows onto the atlas (``mse``, ``kl-rows``) moves every client to the
mean, erasing what the merge lives on; the ``neighbourhood`` family transfers only
who is near whom among the pool samples and leaves each client its own coordinates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

TEMPERATURE = 0.1  # of the row softmaxes, as measured in ALGORITHMS.md section 8
NEIGHBOURS = 3  # the atlas neighbours ``neighbour-contrastive`` pulls together


def mse(own_rows: Tensor, atlas_rows: Tensor, **options: Any) -> Tensor:
    """Mean squared distance of the rows: the client's coordinates become the atlas's."""
    return F.mse_loss(own_rows, atlas_rows)


def kl_rows(own_rows: Tensor, atlas_rows: Tensor, *, temperature: float = TEMPERATURE, **options: Any) -> Tensor:
    """KL from the atlas's row-softmaxed similarities to the client's: which anchors each sample is near."""
    target = F.softmax(atlas_rows / temperature, dim=1)
    return F.kl_div(F.log_softmax(own_rows / temperature, dim=1), target, reduction="batchmean")


def _neighbour_logits(x: Tensor, temperature: float, centre: bool = False) -> Tensor:
    """Pairwise cosine similarities of the rows (less the batch's mean row, if ``centre``) over
    ``temperature``, diagonal removed: ``[B, B - 1]``."""
    unit = F.normalize(x - x.mean(dim=0, keepdim=True) if centre else x, dim=1)
    similarities = unit @ unit.T / temperature
    off_diagonal = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    return similarities[off_diagonal].view(len(x), len(x) - 1)


def _softmax_kl(target_logits: Tensor, own_logits: Tensor) -> Tensor:
    """Per row: KL from the softmax of ``target_logits`` to that of ``own_logits``."""
    target = F.softmax(target_logits, dim=1)
    return (torch.xlogy(target, target) - target * F.log_softmax(own_logits, dim=1)).sum(dim=1)


def _neighbourhood_kl(own: Tensor, atlas_rows: Tensor, temperature: float, centre: bool = False) -> Tensor:
    """Per sample: KL between the atlas's and ``own``'s softmaxed similarities to the other samples."""
    return _softmax_kl(_neighbour_logits(atlas_rows, temperature, centre), _neighbour_logits(own, temperature, centre))


def neighbourhood(
    own_rows: Tensor, atlas_rows: Tensor, *, embeddings: Tensor | None = None, temperature: float = TEMPERATURE,
    **options: Any,
) -> Tensor:  # fmt: skip
    """Relational distillation: the client's embeddings of the batch learn the atlas's
    neighbourhood structure (KL of the row-softmaxed pairwise similarities, diagonal masked)."""
    return _neighbourhood_kl(own_rows if embeddings is None else embeddings, atlas_rows, temperature).mean()


def neighbourhood_centred(
    own_rows: Tensor, atlas_rows: Tensor, *, embeddings: Tensor | None = None, temperature: float = TEMPERATURE,
    **options: Any,
) -> Tensor:  # fmt: skip
    """``neighbourhood`` on rows and embeddings less their batch mean: cosine rows share a large
    common part (every row near every other), which flattens the target softmax; centred, the
    target keeps its contrast and the client is not pulled towards a collapsed embedding."""
    return _neighbourhood_kl(own_rows if embeddings is None else embeddings, atlas_rows, temperature, centre=True).mean()


def neighbourhood_rows(own_rows: Tensor, atlas_rows: Tensor, *, temperature: float = TEMPERATURE, **options: Any) -> Tensor:
    """``neighbourhood`` measured on the client's relative rows instead of its embeddings."""
    return _neighbourhood_kl(own_rows, atlas_rows, temperature).mean()


def neighbourhood_uncertain(
    own_rows: Tensor, atlas_rows: Tensor, *, embeddings: Tensor, logits: Tensor, temperature: float = TEMPERATURE,
    **options: Any,
) -> Tensor:  # fmt: skip
    """``neighbourhood``, each sample weighted by its head's normalised entropy: the pull
    goes where the client is least certain (its unseen classes), not where it already knows."""
    probabilities = F.softmax(logits.detach(), dim=1)
    entropy = -torch.xlogy(probabilities, probabilities).sum(dim=1) / torch.log(torch.tensor(float(logits.shape[1])))
    weights = entropy / entropy.mean().clamp_min(1e-8)
    return (weights * _neighbourhood_kl(embeddings, atlas_rows, temperature)).mean()


def neighbour_contrastive(
    own_rows: Tensor, atlas_rows: Tensor, *, embeddings: Tensor, temperature: float = TEMPERATURE,
    neighbours: int = NEIGHBOURS, **options: Any,
) -> Tensor:  # fmt: skip
    """Contrastive: each sample's ``neighbours`` nearest in the atlas (within the batch) are
    its positives, the rest of the batch its negatives, in the client's own embedding."""
    atlas_logits = _neighbour_logits(atlas_rows, 1.0)
    positives = atlas_logits.topk(min(neighbours, atlas_logits.shape[1]), dim=1).indices
    log_own = F.log_softmax(_neighbour_logits(embeddings, temperature), dim=1)
    return -log_own.gather(1, positives).mean()


def neighbourhood_residual(
    own_rows: Tensor, atlas_rows: Tensor, *, embeddings: Tensor, temperature: float = TEMPERATURE, **options: Any,
) -> Tensor:  # fmt: skip
    """``neighbourhood`` that transfers only where the atlas differs from the client: the
    target is the client's own embedding similarities plus (atlas - own rows) similarities,
    so an atlas that agrees with the client pulls nothing, and the embedding keeps its own
    contrast (plain ``neighbourhood`` makes it as flat as the rows' similarities)."""
    live = _neighbour_logits(embeddings, 1.0)
    shift = _neighbour_logits(atlas_rows, 1.0) - _neighbour_logits(own_rows.detach(), 1.0)
    return _softmax_kl((live.detach() + shift) / temperature, live / temperature).mean()
