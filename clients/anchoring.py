"""The anchors a client projects on, in each ``anchors-mode``.

- ``shared``: the server's public anchor samples, embedded locally.
- ``class-matched``: the client's own samples; anchor i is of the public class
  ``anchor-classes[i]`` on every client.
- ``bootstrapped`` (two phases): first the client sends the cosine Gram matrix of
  its pool, ``K`` public seed samples followed by its own candidates; the server
  matches the clients' pools and answers with the pool rows that are the anchors.
- ``translated`` (two phases): first the client sends its embeddings of the seeds
  and of its class-matched anchors; the server answers with the reference
  client's, and the client translates its embeddings of the samples into the
  reference's space and projects them on the reference's anchors.

Only similarities or embeddings leave the client, never its samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from relatlas.aggregation.anchors import select_anchors
from relatlas.aggregation.translation import ProcrustesTranslation, translate_by_inversion
from relatlas.clients.training import derive_seed
from torch import Tensor

ANCHOR_MODES = ("shared", "class-matched", "bootstrapped", "translated")
TWO_PHASE_MODES = ("bootstrapped", "translated")
TRANSLATIONS = ("procrustes", "inversion")
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


def translate(samples: Tensor, own_seeds: Tensor, reference_seeds: Tensor, method: str) -> Tensor:
    """Embeddings of ``samples`` moved into the reference client's space through the seed pairs."""
    if method == "procrustes":
        return ProcrustesTranslation.fit(own_seeds, reference_seeds)(samples)
    if method == "inversion":
        return translate_by_inversion(samples, own_seeds, reference_seeds)
    raise ValueError(f"unknown translation {method!r}; choose from {', '.join(TRANSLATIONS)}")
