"""Relative projection: each sample described by its similarities to anchors.

Moschella et al. (ICLR 2023). The cosine projection is invariant to any
orthogonal map and positive rescaling applied to samples and anchors alike;
the distance-based projections are invariant to other transformation classes
(see ``SIMILARITIES``), which is what "From Bricks to Bridges" combines.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Similarity = Literal["cosine", "euclidean", "l1", "linf"]

# Invariances of each similarity (all also invariant to translation once centred):
#   cosine    -> orthogonal maps, positive rescaling
#   euclidean -> orthogonal maps, translation
#   l1, linf  -> coordinate permutations and sign flips, translation
SIMILARITIES: tuple[Similarity, ...] = ("cosine", "euclidean", "l1", "linf")

# The values each similarity can take: what a client's projection must lie in.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    "cosine": (-1.0, 1.0), "euclidean": (0.0, math.inf), "l1": (0.0, math.inf), "linf": (0.0, math.inf),
}  # fmt: skip

# Memory budget for one block of the output, in elements (fp32: 256 MiB).
DEFAULT_BLOCK_ELEMENTS = 64 * 1024 * 1024


def _cosine(x: Tensor, anchors_unit: Tensor) -> Tensor:
    return F.normalize(x, dim=-1) @ anchors_unit.T


def _euclidean(x: Tensor, anchors: Tensor) -> Tensor:
    return torch.cdist(x, anchors, p=2.0)


def _l1(x: Tensor, anchors: Tensor) -> Tensor:
    return torch.cdist(x, anchors, p=1.0)


def _linf(x: Tensor, anchors: Tensor) -> Tensor:
    return torch.cdist(x, anchors, p=float("inf"))


# (prepare anchors once, compute one block of rows)
_KERNELS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "cosine": (lambda a: F.normalize(a, dim=-1), _cosine),
    "euclidean": (lambda a: a, _euclidean),
    "l1": (lambda a: a, _l1),
    "linf": (lambda a: a, _linf),
}


def relative_projection(
    x: Tensor,
    anchors: Tensor,
    similarity: Similarity = "cosine",
    *,
    center: bool = False,
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
) -> Tensor:
    """Project ``x`` [N, d] onto ``anchors`` [m, d]; returns [N, m].

    Rows are processed in blocks of at most ``block_elements`` output entries,
    so memory stays bounded for large N x m.

    Parameters
    ----------
    x, anchors
        Absolute embeddings of the samples and of the anchors, from the same encoder.
    similarity
        One of ``SIMILARITIES``. Distances are returned as they are (larger means
        farther); downstream normalisation makes the sign irrelevant.
    center
        Subtract the anchors' mean from both sides first (translation invariance).
    """
    if similarity not in _KERNELS:
        raise ValueError(f"unknown similarity {similarity!r}; choose from {', '.join(SIMILARITIES)}")
    if x.ndim != 2 or anchors.ndim != 2 or x.shape[1] != anchors.shape[1]:
        raise ValueError(f"expected x [N, d] and anchors [m, d], got {tuple(x.shape)} and {tuple(anchors.shape)}")
    if center:
        mean = anchors.mean(dim=0, keepdim=True)
        x, anchors = x - mean, anchors - mean
    prepare, kernel = _KERNELS[similarity]
    prepared = prepare(anchors)
    rows = max(1, block_elements // max(1, anchors.shape[0]))
    if rows >= x.shape[0]:
        return kernel(x, prepared)
    out = x.new_empty((x.shape[0], anchors.shape[0]))
    for start in range(0, x.shape[0], rows):
        out[start : start + rows] = kernel(x[start : start + rows], prepared)
    return out


def relative_subspaces(
    x: Tensor, anchors: Tensor, similarities: tuple[Similarity, ...], *, center: bool = False
) -> dict[str, Tensor]:
    """One relative projection per similarity, keyed by its name."""
    return {name: relative_projection(x, anchors, name, center=center) for name in similarities}
