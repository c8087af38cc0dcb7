"""Bootstrapping parallel anchors from a few seed pairs (Cannistraci et al.,
ICLR 2023 Tiny Papers).

Each round describes both sides' samples relative to the current parallel
anchors, matches them one to one by the cosine of those relative vectors
(Hungarian), and adds the most confident new pairs. Matches are pairs of real
samples, so new anchors are always snapped to data.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from aggregation.projection import relative_projection


def match(relative_a: Tensor, relative_b: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching maximising the total cosine of relative vectors;
    returns (rows of a, rows of b, cosine of each pair)."""
    similarity = (F.normalize(relative_a.double(), dim=1) @ F.normalize(relative_b.double(), dim=1).T).numpy()
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return rows, cols, similarity[rows, cols]


def bootstrap_anchors(
    space_a: Tensor, space_b: Tensor, seeds: tuple[np.ndarray, np.ndarray], *, target: int, per_round: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grow the seed pairs (indices into ``space_a`` and ``space_b``) to ``target``
    parallel anchors, adding ``per_round`` (default: as many as there are) per round."""
    anchors_a, anchors_b = (np.asarray(s, dtype=np.int64) for s in seeds)
    if len(anchors_a) != len(anchors_b) or len(anchors_a) == 0:
        raise ValueError(f"need equally many (>= 1) seed indices on both sides; got {len(anchors_a)} and {len(anchors_b)}")
    if target > min(len(space_a), len(space_b)):
        raise ValueError(f"cannot grow to {target} anchors from {len(space_a)} and {len(space_b)} samples")
    while len(anchors_a) < target:
        free_a = np.setdiff1d(np.arange(len(space_a)), anchors_a)
        free_b = np.setdiff1d(np.arange(len(space_b)), anchors_b)
        relative_a = relative_projection(space_a[free_a], space_a[anchors_a], "cosine")
        relative_b = relative_projection(space_b[free_b], space_b[anchors_b], "cosine")
        rows, cols, scores = match(relative_a, relative_b)
        grow = min(target - len(anchors_a), per_round or len(anchors_a))
        best = np.argsort(-scores, kind="stable")[:grow]
        anchors_a = np.concatenate([anchors_a, free_a[rows[best]]])
        anchors_b = np.concatenate([anchors_b, free_b[cols[best]]])
    return anchors_a, anchors_b
