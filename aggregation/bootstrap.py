"""Bootstrapping parallel anchors from a few seed pairs (Cannistraci et al.,
ICLR 2023 Tiny Papers).

Each round describes every side's free samples relative to the current parallel
anchors, matches them one to one by the cosine of those relative vectors
(Hungarian), and adds the most confident new pairs. Matches are pairs of real
samples, so new anchors are always snapped to data.

The loop reads only cosine similarities among each side's own samples (a Gram
matrix), never embeddings: that is what lets a server run it on what clients
send. With more than two sides, side 0 is the reference: every other side is
matched to it, and a reference sample is added with its partners when its mean
match score over the other sides is among the best.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from relatlas.aggregation.projection import relative_projection


def cosine_gram(space: Tensor) -> Tensor:
    """[n, n] cosine similarities among the rows of ``space``."""
    return relative_projection(space, space, "cosine")


def match(relative_a: Tensor, relative_b: Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching maximising the total cosine of relative vectors;
    returns (rows of a, rows of b, cosine of each pair)."""
    similarity = (F.normalize(relative_a.double(), dim=1) @ F.normalize(relative_b.double(), dim=1).T).numpy()
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    return rows, cols, similarity[rows, cols]


def _check(grams: Sequence[Tensor], seeds: Sequence[np.ndarray], target: int) -> None:
    if len(grams) < 2 or len(grams) != len(seeds):
        raise ValueError(f"need one Gram matrix and one seed list per side, two sides or more; got {len(grams)}, {len(seeds)}")
    counts = {len(s) for s in seeds}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"need equally many (>= 1) seed indices on every side; got {[len(s) for s in seeds]}")
    for gram in grams:
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError(f"a Gram matrix must be square; got shape {tuple(gram.shape)}")
    smallest = min(len(g) for g in grams)
    if target > smallest:
        raise ValueError(f"cannot grow to {target} parallel anchors: the smallest side has {smallest} samples")


def bootstrap_anchors(
    grams: Sequence[Tensor], seeds: Sequence[np.ndarray], *, target: int, per_round: int | None = None
) -> list[np.ndarray]:
    """Grow the seed correspondences to ``target`` parallel anchors.

    Parameters
    ----------
    grams
        One [n_k, n_k] cosine Gram matrix per side (``cosine_gram`` of its samples).
    seeds
        Per side, indices of the seed samples; ``seeds[k][i]`` on every side correspond.
    per_round
        Pairs added per round; default: as many as there already are (doubling).

    Returns
    -------
    Per side, ``target`` indices; entry i of every side is one parallel anchor.
    """
    _check(grams, seeds, target)
    anchors = [np.asarray(s, dtype=np.int64) for s in seeds]
    while len(anchors[0]) < target:
        free = [np.setdiff1d(np.arange(len(g)), a) for g, a in zip(grams, anchors)]
        relative = [g[f][:, a] for g, f, a in zip(grams, free, anchors)]
        partners = np.full((len(grams) - 1, len(free[0])), -1)
        scores = np.zeros(len(free[0]))
        for side in range(1, len(grams)):
            rows, cols, cosines = match(relative[0], relative[side])
            partners[side - 1, rows] = free[side][cols]
            scores[rows] += cosines
        scores[(partners < 0).any(axis=0)] = -np.inf  # a reference sample unmatched on some side
        grow = min(target - len(anchors[0]), per_round or len(anchors[0]), int(np.isfinite(scores).sum()))
        if grow == 0:
            raise ValueError(f"stuck at {len(anchors[0])} parallel anchors: no free reference sample matches on every side")
        best = np.argsort(-scores, kind="stable")[:grow]
        anchors[0] = np.concatenate([anchors[0], free[0][best]])
        for side in range(1, len(grams)):
            anchors[side] = np.concatenate([anchors[side], partners[side - 1, best]])
    return anchors
