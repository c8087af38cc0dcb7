"""Sparse relative representations (ASIF, Norelli et al.): keep each row's top-k
similarities, raise them to a power, re-normalise. A client sends k values and
k column indices per row instead of m values; the server scatters them back
into a dense [N, m] matrix with zeros elsewhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def topk_sparsify(relative: Tensor, k: int, power: float = 1.0) -> tuple[Tensor, Tensor]:
    """(values, column indices), each [N, k]: the k largest entries of every row,
    clamped at zero (a negative cosine is no neighbour), raised to ``power``, rows
    L2-normalised."""
    if not 1 <= k <= relative.shape[1]:
        raise ValueError(f"top-k needs 1 <= k <= {relative.shape[1]} (the anchor count); got {k}")
    values, indices = relative.topk(k, dim=1)
    return F.normalize(values.clamp_min(0.0) ** power, dim=1), indices


def densify(values: Tensor, indices: Tensor, width: int) -> Tensor:
    """The [N, width] matrix holding ``values`` at ``indices`` and zeros elsewhere."""
    return torch.zeros(values.shape[0], width, dtype=values.dtype).scatter(1, indices.long(), values)
