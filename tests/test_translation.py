"""Latent translation: Procrustes and inverse relative projection."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relatlas.aggregation.translation import (
    RIDGE,
    ProcrustesTranslation,
    inverse_relative_projection,
    procrustes,
    translate_by_inversion,
)
from tests.conftest import random_orthogonal


def _points(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_procrustes_recovers_a_random_orthogonal_map():
    x, q = _points(200, 12, 0), random_orthogonal(12, seed=1)
    assert torch.allclose(procrustes(x, x @ q), q, atol=1e-8)


def test_translation_maps_held_out_points_across_rotation_scale_and_shift():
    x, q = _points(300, 10, 2), random_orthogonal(10, seed=3)
    target_space = 2.5 * x @ q + 4.0
    translated = ProcrustesTranslation.fit(x[:100], target_space[:100])(x[100:])
    # per-dimension standard scaling is estimated from 100 anchors, so the map is close, not exact
    assert F.cosine_similarity(translated - 4.0, target_space[100:] - 4.0).mean() > 0.99
    assert (translated.mean(dim=0) - target_space[100:].mean(dim=0)).abs().max() < 0.5


def test_translation_between_spaces_of_different_width():
    x = _points(100, 8, 4)
    target_space = F.pad(x @ random_orthogonal(8, seed=5), (0, 4))  # 12-D, last 4 dims empty
    translated = ProcrustesTranslation.fit(x[:50], target_space[:50])(x[50:])
    assert translated.shape == (50, 12)
    assert F.cosine_similarity(translated[:, :8], target_space[50:, :8]).mean() > 0.99


def test_inverse_relative_projection_round_trips_through_one_encoder():
    x, anchors = _points(100, 16, 6), _points(64, 16, 7)
    back = translate_by_inversion(x, anchors, anchors)
    assert F.cosine_similarity(back, x).min() > 0.999
    assert back.norm(dim=1).allclose(anchors.norm(dim=1).mean().expand(100))


def test_inverse_relative_projection_through_a_rotation():
    x, anchors, q = _points(100, 16, 8), _points(64, 16, 9), random_orthogonal(16, seed=10)
    back = translate_by_inversion(x, anchors, anchors @ q)
    assert F.cosine_similarity(back, x @ q).min() > 0.999


def test_ridge_zero_is_the_plain_least_squares_solve():
    relative, anchors = _points(20, 32, 11), _points(32, 16, 12)
    plain = torch.linalg.lstsq(F.normalize(anchors, dim=1), relative.T).solution.T
    assert F.cosine_similarity(inverse_relative_projection(relative, anchors, ridge=0.0), plain).min() > 1 - 1e-9


def test_regularised_inversion_survives_ill_conditioned_anchors_where_the_plain_solve_fails():
    # a target space that is a rotation of the source plus noise; decaying scales make the unit anchors ill-conditioned
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(216, 16, generator=gen, dtype=torch.float64) * torch.logspace(0, -2, 16, dtype=torch.float64)
    target = (source + 0.05 * torch.randn(216, 16, generator=gen, dtype=torch.float64)) @ random_orthogonal(16, seed=100)
    singular = torch.linalg.svdvals(F.normalize(target[:16], dim=1))
    assert singular[0] / singular[-1] > 500

    def cosine(ridge: float) -> float:
        moved = translate_by_inversion(source[16:], source[:16], target[:16], ridge=ridge)
        return F.cosine_similarity(moved, target[16:]).mean().item()

    assert cosine(RIDGE) > 0.9 and cosine(0.0) < 0.5


def test_inversion_with_fewer_anchors_than_dimensions_recovers_points_in_their_span():
    basis, q = random_orthogonal(16, seed=13)[:8], random_orthogonal(16, seed=14)
    x = _points(100, 8, 15) @ basis
    back = translate_by_inversion(x, basis, basis @ q)
    assert F.cosine_similarity(back, x @ q).min() > 0.999
