"""Bootstrapping parallel anchors recovers a hidden correspondence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aggregation.bootstrap import bootstrap_anchors, match
from tests.conftest import random_orthogonal


def test_matching_finds_a_permutation_of_identical_vectors():
    vectors = torch.rand(30, 6, generator=torch.Generator().manual_seed(0))
    perm = np.random.default_rng(0).permutation(30)
    rows, cols, scores = match(vectors, vectors[perm])
    assert np.array_equal(perm[cols], rows) and np.allclose(scores, 1.0)


def test_bootstrapping_recovers_a_hidden_permutation_from_a_few_seeds():
    gen = torch.Generator().manual_seed(1)
    centres = torch.randn(6, 16, generator=gen, dtype=torch.float64) * 5
    space_a = centres.repeat_interleave(40, dim=0) + torch.randn(240, 16, generator=gen, dtype=torch.float64)
    hidden = np.random.default_rng(2).permutation(240)  # b's row hidden[i] is a's row i
    space_b = torch.empty_like(space_a)
    space_b[torch.as_tensor(hidden)] = 3.0 * space_a @ random_orthogonal(16, seed=3)
    seeds_a = np.arange(0, 240, 40)[:6] + 1  # one seed pair per cluster
    anchors_a, anchors_b = bootstrap_anchors(space_a, space_b, (seeds_a, hidden[seeds_a]), target=48)
    assert len(anchors_a) == len(anchors_b) == 48 and len(set(anchors_a)) == 48
    assert np.mean(hidden[anchors_a] == anchors_b) > 0.9


def test_bootstrapping_refuses_unpaired_seeds():
    with pytest.raises(ValueError, match="equally many"):
        bootstrap_anchors(torch.rand(10, 3), torch.rand(10, 3), (np.arange(3), np.arange(2)), target=5)
