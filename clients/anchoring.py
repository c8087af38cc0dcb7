"""Client-side helpers of the anchor modes (``relatlas.clients.anchor_mode_*``):
the seed of a client's own anchor draws and a bootstrapping pool's candidates.
Only similarities or embeddings leave the client, never its samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relatlas.aggregation.anchors import select_anchors
from relatlas.clients.training import derive_seed

CANDIDATES_PER_ANCHOR = 4  # a bootstrapping pool holds this many local candidates per anchor wanted
ANCHOR_STREAM = 20_000  # seed stream of a client's own anchor draws, apart from its rounds


def anchor_seed(run_seed: int, partition: int) -> int:
    """Seed of a client's own anchor draws: the same every round."""
    return derive_seed(run_seed, partition, ANCHOR_STREAM)


def bootstrap_candidates(labels: np.ndarray, num_anchors: int, anchor_classes: Sequence[int], seed: int) -> np.ndarray:
    """Rows of the client's data that may become bootstrapped anchors: a seeded
    draw from the anchor classes, ``CANDIDATES_PER_ANCHOR`` per anchor when there are enough."""
    classes = sorted(set(int(c) for c in anchor_classes))
    available = int(np.isin(labels, classes).sum())
    return select_anchors(labels, min(CANDIDATES_PER_ANCHOR * num_anchors, available), classes=classes, seed=seed)
