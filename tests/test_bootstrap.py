"""Bootstrapping parallel anchors recovers a hidden correspondence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relatlas.aggregation.bootstrap import bootstrap_anchors, cosine_gram, match
from tests.conftest import random_orthogonal


def test_matching_finds_a_permutation_of_identical_vectors():
    vectors = torch.rand(30, 6, generator=torch.Generator().manual_seed(0))
    perm = np.random.default_rng(0).permutation(30)
    rows, cols, scores = match(vectors, vectors[perm])
    assert np.array_equal(perm[cols], rows) and np.allclose(scores, 1.0)


def _clustered(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(6, 16, generator=gen, dtype=torch.float64) * 5
    return centres.repeat_interleave(40, dim=0) + torch.randn(240, 16, generator=gen, dtype=torch.float64)


def _hidden_copy(space: torch.Tensor, seed: int) -> tuple[torch.Tensor, np.ndarray]:
    """A rotated, rescaled copy whose row hidden[i] is row i of ``space``."""
    hidden = np.random.default_rng(seed).permutation(len(space))
    copy = torch.empty_like(space)
    copy[torch.as_tensor(hidden)] = 3.0 * space @ random_orthogonal(space.shape[1], seed=seed + 1)
    return copy, hidden


SEEDS = np.arange(0, 240, 40) + 1  # one seed pair per cluster


def test_bootstrapping_recovers_a_hidden_permutation_from_a_few_seeds():
    space_a = _clustered(1)
    space_b, hidden = _hidden_copy(space_a, 2)
    anchors_a, anchors_b = bootstrap_anchors([cosine_gram(space_a), cosine_gram(space_b)], [SEEDS, hidden[SEEDS]], target=48)
    assert len(anchors_a) == len(anchors_b) == 48 and len(set(anchors_a)) == 48
    assert np.mean(hidden[anchors_a] == anchors_b) > 0.9


def test_bootstrapping_keeps_every_side_parallel_to_the_reference():
    space_a = _clustered(3)
    (space_b, hidden_b), (space_c, hidden_c) = _hidden_copy(space_a, 4), _hidden_copy(space_a, 6)
    grams = [cosine_gram(s) for s in (space_a, space_b, space_c)]
    anchors_a, anchors_b, anchors_c = bootstrap_anchors(grams, [SEEDS, hidden_b[SEEDS], hidden_c[SEEDS]], target=40)
    assert np.mean(hidden_b[anchors_a] == anchors_b) > 0.9 and np.mean(hidden_c[anchors_a] == anchors_c) > 0.9


def test_bootstrapping_refuses_unpaired_seeds_and_impossible_targets():
    grams = [cosine_gram(torch.rand(10, 3)), cosine_gram(torch.rand(8, 3))]
    with pytest.raises(ValueError, match="equally many"):
        bootstrap_anchors(grams, [np.arange(3), np.arange(2)], target=5)
    with pytest.raises(ValueError, match="smallest side has 8 samples"):
        bootstrap_anchors(grams, [np.arange(3), np.arange(3)], target=9)
