"""Latent translation: Procrustes and inverse relative projection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from relatlas.aggregation.translation import (
    RIDGES,
    ProcrustesTranslation,
    cross_validated_ridge,
    held_out_cosines,
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


def test_procrustes_with_fewer_pairs_than_dimensions_is_fixed_by_the_pairs_alone():
    x, q, basis = _points(5, 12, 11), random_orthogonal(12, seed=12), random_orthogonal(12, seed=13)
    assert torch.allclose(procrustes(x, x), torch.eye(12, dtype=torch.float64), atol=1e-8)  # a space into itself
    rotation = procrustes(x, x @ q)
    assert torch.allclose(x @ rotation, x @ q, atol=1e-8)
    # the same pairs in another basis give the same map in that basis: the SVD's choice of vectors does not leak in
    assert torch.allclose(procrustes(x @ basis, x @ q @ basis), basis.T @ rotation @ basis, atol=1e-8)
    assert torch.allclose(rotation.T @ rotation, torch.eye(12, dtype=torch.float64), atol=1e-8)


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
    for ridge in (0.0, 1e-8):
        assert F.cosine_similarity(inverse_relative_projection(relative, anchors, ridge=ridge), plain).min() > 1 - 1e-9
    with pytest.raises(ValueError, match="ridge must be a number >= 0"):
        inverse_relative_projection(relative, anchors, ridge=-0.1)


def test_held_out_cosines_translate_each_anchor_through_the_others():
    source, target = _points(6, 8, 16), _points(6, 8, 17)
    ridges = (0.01, 0.3)
    expected = [
        sum(
            F.cosine_similarity(
                translate_by_inversion(source[i : i + 1], source[torch.arange(6) != i], target[torch.arange(6) != i], ridge=r),
                target[i : i + 1],
            ).item()
            for i in range(6)
        )
        / 6
        for r in ridges
    ]
    torch.testing.assert_close(held_out_cosines(source, target, ridges, folds=6), torch.tensor(expected, dtype=torch.float64))


def _ill_conditioned_pair(noise: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A target space that is a rotation of the source plus noise; decaying scales
    make the unit anchors ill-conditioned. The first 16 rows are the anchors."""
    gen = torch.Generator().manual_seed(0)
    source = torch.randn(216, 16, generator=gen, dtype=torch.float64) * torch.logspace(0, -2, 16, dtype=torch.float64)
    target = (source + noise * torch.randn(216, 16, generator=gen, dtype=torch.float64)) @ random_orthogonal(16, seed=100)
    return source, target


def _recovered(source: torch.Tensor, target: torch.Tensor, ridge: float | None) -> float:
    moved = translate_by_inversion(source[16:], source[:16], target[:16], ridge=ridge)
    return F.cosine_similarity(moved, target[16:]).mean().item()


def test_regularised_inversion_survives_ill_conditioned_anchors_where_the_plain_solve_fails():
    source, target = _ill_conditioned_pair(0.05)
    singular = torch.linalg.svdvals(F.normalize(target[:16], dim=1))
    assert singular[0] / singular[-1] > 500
    assert _recovered(source, target, None) > 0.9 and _recovered(source, target, 0.1) > 0.9
    assert _recovered(source, target, 0.0) < 0.5


@pytest.mark.parametrize(("noise", "bad_ridge"), [(0.002, 0.3), (0.01, 0.001), (0.2, 0.01)])
def test_the_cross_validated_ridge_recovers_a_known_map_better_than_a_badly_fixed_one(noise, bad_ridge):
    source, target = _ill_conditioned_pair(noise)
    singular = torch.linalg.svdvals(F.normalize(target[:16], dim=1))
    assert singular[0] / singular[-1] > 50
    best_fixed = max(_recovered(source, target, ridge) for ridge in (0.0, 0.001, 0.01, 0.03, 0.1, 0.3))
    chosen = _recovered(source, target, None)
    assert chosen > best_fixed - 0.02
    assert chosen > _recovered(source, target, bad_ridge) + 0.03


def test_the_cross_validated_ridge_grows_with_the_mismatch_between_the_spaces():
    ridges = [cross_validated_ridge(*(space[:16] for space in _ill_conditioned_pair(noise))) for noise in (0.0, 0.01, 0.2)]
    assert ridges == sorted(ridges) and ridges[0] < 0.01 < 0.1 < ridges[2] and set(ridges) <= set(RIDGES)


def test_inversion_refuses_anchors_that_do_not_pair_up():
    with pytest.raises(ValueError, match="16 source anchors but 8 target anchors"):
        translate_by_inversion(_points(4, 8, 18), _points(16, 8, 19), _points(8, 8, 20))


def test_inversion_with_fewer_anchors_than_dimensions_recovers_points_in_their_span():
    basis, q = random_orthogonal(16, seed=13)[:8], random_orthogonal(16, seed=14)
    x = _points(100, 8, 15) @ basis
    back = translate_by_inversion(x, basis, basis @ q)
    assert F.cosine_similarity(back, x @ q).min() > 0.999
