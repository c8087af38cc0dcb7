"""Merging several clients' relative spaces of the same samples into one.

All merges take a sequence of [N, m] tensors, one per client, over the same
anchors and the same N samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

Combine = Literal["concat", "sum"]


def _stack(spaces: Sequence[Tensor]) -> Tensor:
    if not spaces:
        raise ValueError("nothing to merge: no client spaces")
    shapes = {tuple(s.shape) for s in spaces}
    if len(shapes) != 1:
        raise ValueError(f"client spaces differ in shape: {sorted(shapes)}")
    return torch.stack(list(spaces))


def mean_merge(
    spaces: Sequence[Tensor],
    *,
    weights: Sequence[float] | Tensor | None = None,
    masks: Tensor | None = None,
) -> Tensor:
    """Element-wise (weighted, masked) mean of the clients' relative vectors.

    Relative Latent Space Aggregation: a sample seen by several clients gets the
    mean of its relative vectors. ``weights`` (e.g. sample counts) scale each
    client; ``masks`` [K, N] mark the samples each client actually projected, so a
    sample is averaged only over the clients that saw it.
    """
    stacked = _stack(spaces)  # [K, N, m]
    k, n, _ = stacked.shape
    w = torch.ones(k, dtype=stacked.dtype) if weights is None else torch.as_tensor(weights, dtype=stacked.dtype)
    if w.shape != (k,) or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(f"weights must be {k} non-negative numbers with a positive sum, got {w.tolist()}")
    mask = torch.ones(k, n, dtype=torch.bool) if masks is None else masks.to(torch.bool)
    if mask.shape != (k, n):
        raise ValueError(f"masks must have shape {(k, n)}, got {tuple(mask.shape)}")
    per_sample = w[:, None].to(stacked.device) * mask.to(stacked.device, stacked.dtype)  # [K, N]
    total = per_sample.sum(dim=0)
    if bool((total <= 0).any()):
        missing = torch.nonzero(total <= 0).flatten()[:5].tolist()
        raise ValueError(f"samples {missing} were projected by no client with positive weight")
    return (per_sample[:, :, None] * stacked).sum(dim=0) / total[:, None]


def concat_merge(spaces: Sequence[Tensor]) -> Tensor:
    """Side-by-side concatenation, the baseline that keeps every client's view."""
    _stack(spaces)
    return torch.cat(list(spaces), dim=1)


def standardize_rows(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit variance per row: the parameter-free per-subspace LayerNorm."""
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def product_merge(subspaces: Sequence[Tensor], *, combine: Combine = "concat") -> Tensor:
    """Product of invariances ("From Bricks to Bridges").

    Each subspace (one per similarity) is normalised on its own so that no
    similarity dominates by scale, then they are concatenated or summed.
    """
    normalised = [standardize_rows(s) for s in subspaces]
    if combine == "concat":
        return concat_merge(normalised)
    if combine == "sum":
        return _stack(normalised).sum(dim=0)
    raise ValueError(f"unknown combine {combine!r}; choose concat or sum")
