"""Similarity measures between two latent spaces of the same N samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected two [N, *] matrices over the same samples, got {tuple(x.shape)} and {tuple(y.shape)}")


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019); 1 means equal up to
    an orthogonal map and isotropic scaling. Dimensions may differ."""
    _check_pair(x, y)
    x = (x - x.mean(dim=0)).double()
    y = (y - y.mean(dim=0)).double()
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / norms) if norms > 0 else 0.0


def _knn(x: Tensor, k: int, block_rows: int = 2048) -> Tensor:
    """Each row's k nearest other rows by cosine, in row blocks so memory stays O(block x N)."""
    unit = F.normalize(x.double(), dim=1)
    neighbours = []
    for start in range(0, len(unit), block_rows):
        sims = unit[start : start + block_rows] @ unit.T
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = -float("inf")  # a sample is not its own neighbour
        neighbours.append(sims.topk(k, dim=1).indices)
    return torch.cat(neighbours)


def topk_jaccard(x: Tensor, y: Tensor, k: int = 5) -> float:
    """Mean Jaccard index of each sample's k nearest (cosine) neighbours in the two spaces."""
    _check_pair(x, y)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, N-1] = [1, {x.shape[0] - 1}], got {k}")
    nx, ny = _knn(x, k), _knn(y, k)
    shared = (nx[:, :, None] == ny[:, None, :]).any(dim=2).sum(dim=1).double()
    return float((shared / (2 * k - shared)).mean())


def neighbour_label_agreement(x: Tensor, labels: Tensor, k: int = 5) -> float:
    """Share of each sample's k nearest (cosine) neighbours with its label: how much a
    neighbourhood in ``x`` says about the class, what relational distillation can transfer."""
    if x.ndim != 2 or labels.shape != (x.shape[0],) or not 1 <= k < x.shape[0]:
        raise ValueError(f"expected [N, *] rows, N labels and k in [1, N-1]; got {tuple(x.shape)}, {tuple(labels.shape)}, k={k}")
    return float((labels[_knn(x, k)] == labels[:, None]).double().mean())


def _match_ranks(x: Tensor, y: Tensor) -> Tensor:
    """Rank (1 = best) of row i of ``y`` among all rows of ``y`` as the cosine match of row i of ``x``."""
    _check_pair(x, y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"retrieval needs equal dimensions, got {x.shape[1]} and {y.shape[1]}")
    sims = F.normalize(x.double(), dim=1) @ F.normalize(y.double(), dim=1).T
    return (sims > sims.diagonal()[:, None]).sum(dim=1) + 1


def mean_reciprocal_rank(x: Tensor, y: Tensor) -> float:
    """Mean of 1 / rank of each sample's own counterpart (see ``_match_ranks``);
    1 means every sample retrieves its counterpart first."""
    return float((1.0 / _match_ranks(x, y).double()).mean())


def retrieval_top1(x: Tensor, y: Tensor) -> float:
    """Fraction of samples whose nearest (cosine) row of ``y`` is their own counterpart."""
    return float((_match_ranks(x, y) == 1).double().mean())


def matched_cosine(x: Tensor, y: Tensor) -> float:
    """Mean cosine between matched rows of two spaces of equal dimension."""
    _check_pair(x, y)
    return float(F.cosine_similarity(x.double(), y.double(), dim=1).mean())


def centred_cosine(x: Tensor, y: Tensor) -> float:
    """``matched_cosine`` after removing ``y``'s mean row from both: embeddings share a
    large mean direction, so one constant guess already scores a high raw cosine, and 0 here."""
    centre = y.mean(dim=0)
    return matched_cosine(x - centre, y - centre)
