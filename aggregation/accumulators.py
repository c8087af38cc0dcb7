"""Streaming merges: fold each client's reply into running statistics as it
arrives, then drop it, so the server holds O(samples x anchors) instead of
O(clients x samples x anchors).

An ``Accumulator`` is what an ``Aggregation`` opens for that (its ``accumulator``
field); ``add(space, weight, mask)`` takes one client's ``similarity -> [N, m]``,
its weight and the ``[N]`` samples it projected, ``result()`` the merged space.
The mean and the product of invariances are exact: every normalisation they use
is per client row (``standardize_rows``) or applied to the merged means, never a
statistic over all clients. The robust merges' sketch is in ``quantile_sketch.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import isfinite
from typing import Protocol

import torch
from torch import Tensor

from relatlas.aggregation.merge import Combine, product_merge, standardize_rows


class Accumulator(Protocol):
    """One merge, fed client by client; ``result`` may be called once all have been added."""

    def add(self, space: Mapping[str, Tensor], weight: float = 1.0, mask: Tensor | None = None) -> None: ...

    def result(self) -> Tensor: ...


def client_mask(mask: Tensor | None, samples: int) -> Tensor:
    """The ``[samples]`` booleans of the samples a client projected (all if ``None``)."""
    if mask is None:
        return torch.ones(samples, dtype=torch.bool)
    if tuple(mask.shape) != (samples,):
        raise ValueError(f"a client's mask must have shape {(samples,)}, got {tuple(mask.shape)}")
    return mask.to(torch.bool)


def check_same_shape(first: Tensor | None, space: Tensor) -> None:
    """Every client's subspace has the shape of the first one added."""
    if first is not None and first.shape != space.shape:
        raise ValueError(f"client spaces differ in shape: {sorted({tuple(first.shape), tuple(space.shape)})}")


class WeightedMean:
    """The weighted, masked mean of ``[N, m]`` tensors, as ``mean_merge`` takes it:
    a running weighted sum (float64, so large distances times large weights do not
    overflow) and, per sample, the weight of the clients that projected it."""

    def __init__(self) -> None:
        self._sum: Tensor | None = None
        self._total: Tensor | None = None
        self._dtype = torch.float32

    def check(self, space: Tensor, weight: float, mask: Tensor | None) -> None:
        """Refuse a client before anything of it is added, so a bad reply leaves the sum as it was."""
        if not isfinite(weight) or weight < 0:
            raise ValueError(f"weights must be non-negative numbers, got {weight}")
        check_same_shape(self._sum, space)
        client_mask(mask, space.shape[0])

    def add(self, space: Tensor, weight: float = 1.0, mask: Tensor | None = None) -> None:
        self.check(space, weight, mask)
        if self._sum is None or self._total is None:
            self._sum = torch.zeros(space.shape, dtype=torch.float64, device=space.device)
            self._total = torch.zeros(space.shape[0], dtype=torch.float64, device=space.device)
            self._dtype = space.dtype
        # the weight in the space's dtype first, as mean_merge weighs a stacked space
        per_sample = torch.tensor(weight, dtype=space.dtype) * client_mask(mask, space.shape[0]).to(space.dtype)
        per_sample = per_sample.to(space.device).double()
        self._sum += per_sample[:, None] * space.double()
        self._total += per_sample

    def result(self) -> Tensor:
        if self._sum is None or self._total is None:
            raise ValueError("nothing to merge: no client spaces")
        if bool((self._total <= 0).any()):
            missing = torch.nonzero(self._total <= 0).flatten()[:5].tolist()
            raise ValueError(f"samples {missing} were projected by no client with positive weight")
        return (self._sum / self._total[:, None]).to(self._dtype)


class MeanAccumulator:
    """Relative Latent Space Aggregation of one similarity, streamed: exact."""

    def __init__(self, similarity: str = "cosine") -> None:
        self.similarity = similarity
        self._mean = WeightedMean()

    def add(self, space: Mapping[str, Tensor], weight: float = 1.0, mask: Tensor | None = None) -> None:
        self._mean.add(space[self.similarity], weight, mask)

    def result(self) -> Tensor:
        return self._mean.result()


class ProductAccumulator:
    """The product of invariances, streamed: exact, since each client's subspace is
    row-standardised on its own before the mean, and the means only once merged."""

    def __init__(self, similarities: Sequence[str], combine: Combine) -> None:
        self.combine = combine
        self._means = {name: WeightedMean() for name in similarities}

    def add(self, space: Mapping[str, Tensor], weight: float = 1.0, mask: Tensor | None = None) -> None:
        standardised = {name: standardize_rows(space[name]) for name in self._means}
        for name, mean in self._means.items():
            mean.check(standardised[name], weight, mask)
        for name, mean in self._means.items():
            mean.add(standardised[name], weight, mask)

    def result(self) -> Tensor:
        return product_merge([mean.result() for mean in self._means.values()], combine=self.combine)
