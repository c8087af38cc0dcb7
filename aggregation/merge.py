"""Merging several clients' relative spaces of the same samples into one.

All merges take a sequence of [N, m] tensors, one per client, over the same
anchors and the same N samples.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

# How the product of invariances joins its normalised subspaces [N, m_i] into one space.
Combine = Callable[[Sequence[Tensor]], Tensor]


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
    # in float64: large distances times large weights would overflow a float32 sum
    merged = (per_sample[:, :, None].double() * stacked.double()).sum(dim=0) / total[:, None].double()
    return merged.to(stacked.dtype)


def _sorted_seen(spaces: Sequence[Tensor], masks: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per entry, the clients' values in ascending order with the clients that did not
    project the sample last (as NaN) [K, N, m], and how many did [N, 1]."""
    stacked = _stack(spaces)
    k, n, _ = stacked.shape
    mask = torch.ones(k, n, dtype=torch.bool) if masks is None else masks.to(torch.bool)
    if mask.shape != (k, n):
        raise ValueError(f"masks must have shape {(k, n)}, got {tuple(mask.shape)}")
    seen = mask.sum(dim=0)
    if bool((seen == 0).any()):
        raise ValueError(f"samples {torch.nonzero(seen == 0).flatten()[:5].tolist()} were projected by no client")
    values = stacked.masked_fill(~mask[:, :, None], float("nan"))
    return values.sort(dim=0).values, seen[:, None]


def median_merge(spaces: Sequence[Tensor], *, masks: Tensor | None = None) -> Tensor:
    """Coordinate-wise median over the clients that projected each sample (the mean
    of the two middle values for an even count)."""
    ordered, seen = _sorted_seen(spaces, masks)
    middle = [ordered.gather(0, rank.expand(ordered.shape[1:])[None]).squeeze(0) for rank in ((seen - 1) // 2, seen // 2)]
    return (middle[0] + middle[1]) / 2


TRIM = 0.2  # fraction of the clients trimmed at each end by the trimmed mean when no hostile count is declared


def trimmed_mean_merge(
    spaces: Sequence[Tensor], *, masks: Tensor | None = None, trim: float = TRIM, hostile: int | None = None
) -> Tensor:
    """Coordinate-wise mean without the largest and smallest values, over the clients
    that projected each sample. ``hostile`` F: F values cut at each end (at most
    what leaves one value, for a sample fewer clients projected); else the ``trim``
    fraction, at least one each end once three or more did, so that one client
    alone never sets an extreme."""
    ordered, seen = _sorted_seen(spaces, masks)
    cut = trim_counts(seen, trim=trim, hostile=hostile)
    rank = torch.arange(ordered.shape[0])[:, None, None]
    kept = (rank >= cut) & (rank < seen - cut)  # [K, N, 1]
    return torch.where(kept, ordered, 0.0).sum(dim=0) / kept.sum(dim=0)


def check_trim(trim: float, hostile: int | None) -> None:
    """A trim fraction below a half and a hostile count >= 0, or a one-line error."""
    if not 0 <= trim < 0.5:
        raise ValueError(f"trim must be in [0, 0.5), got {trim}")
    if hostile is not None and hostile < 0:
        raise ValueError(f"hostile must be a count >= 0, got {hostile}")


def trim_counts(seen: Tensor, *, trim: float = TRIM, hostile: int | None = None) -> Tensor:
    """How many values the trimmed mean cuts at each end of an entry that ``seen``
    clients projected (``trimmed_mean_merge``); shared with its streaming sketch."""
    check_trim(trim, hostile)
    if hostile is None:
        return torch.where(seen >= 3, torch.clamp((seen * trim).floor().long(), min=1), 0)
    return torch.clamp((seen - 1) // 2, max=hostile)


def concat_merge(spaces: Sequence[Tensor]) -> Tensor:
    """Side-by-side concatenation, the baseline that keeps every client's view."""
    _stack(spaces)
    return torch.cat(list(spaces), dim=1)


def standardize_rows(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Zero mean, unit variance per row: the parameter-free per-subspace LayerNorm."""
    mean = x.mean(dim=1, keepdim=True)
    std = x.std(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / (std + eps)


def sum_merge(spaces: Sequence[Tensor]) -> Tensor:
    """Element-wise sum: one entry per anchor, every subspace's say added up."""
    return _stack(spaces).sum(dim=0)


def product_merge(subspaces: Sequence[Tensor], *, combine: Combine = concat_merge) -> Tensor:
    """Product of invariances ("From Bricks to Bridges").

    Each subspace (one per similarity) is normalised on its own so that no
    similarity dominates by scale, then ``combine`` joins them: ``concat_merge``
    or ``sum_merge`` (the paper's fixed aggregations; a learned one is another
    ``Combine``).
    """
    return combine([standardize_rows(s) for s in subspaces])
