import pytest
import torch

from relatlas.aggregation.measures import (
    centred_cosine,
    linear_cka,
    matched_cosine,
    mean_reciprocal_rank,
    neighbour_label_agreement,
    retrieval_top1,
    topk_jaccard,
)
from tests.conftest import random_orthogonal


def test_cka_is_one_under_orthogonal_map_and_scaling(clustered):
    points, _ = clustered
    rotated = 3.0 * points.double() @ random_orthogonal(16, 1)
    assert linear_cka(points, rotated) == pytest.approx(1.0, abs=1e-9)


def test_cka_is_low_for_unrelated_spaces(clustered):
    points, _ = clustered
    noise = torch.randn(points.shape, generator=torch.Generator().manual_seed(5))
    assert linear_cka(points, noise) < 0.2


def test_neighbour_measures_are_perfect_for_identical_spaces_and_drop_when_shuffled(clustered):
    points, _ = clustered
    shuffled = points[torch.randperm(len(points), generator=torch.Generator().manual_seed(2))]
    assert topk_jaccard(points, points) == pytest.approx(1.0)
    assert mean_reciprocal_rank(points, points) == pytest.approx(1.0)
    assert matched_cosine(points, points) == pytest.approx(1.0)
    assert topk_jaccard(points, shuffled) < 0.5
    assert mean_reciprocal_rank(points, shuffled) < 0.5
    assert retrieval_top1(points, points) == 1.0 and retrieval_top1(points, shuffled) < 0.2


def test_retrieval_counts_samples_whose_counterpart_ranks_first():
    x = torch.eye(4)
    y = torch.eye(4)[[0, 1, 3, 2]]  # rows 2 and 3 retrieve each other's counterpart
    assert retrieval_top1(x, y) == 0.5
    assert mean_reciprocal_rank(x, y) == pytest.approx((1 + 1 + 0.5 + 0.5) / 4)


def test_measures_reject_mismatched_spaces():
    with pytest.raises(ValueError, match="same samples"):
        linear_cka(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="equal dimensions"):
        mean_reciprocal_rank(torch.randn(5, 3), torch.randn(5, 4))
    with pytest.raises(ValueError, match="k must be"):
        topk_jaccard(torch.randn(5, 3), torch.randn(5, 3), k=5)


def test_jaccard_is_the_same_in_row_blocks(clustered, monkeypatch):
    from relatlas.aggregation import measures

    points, _ = clustered
    other = points + torch.randn(points.shape, generator=torch.Generator().manual_seed(9))
    whole = topk_jaccard(points, other)
    original = measures._knn
    monkeypatch.setattr(measures, "_knn", lambda x, k: original(x, k, block_rows=7))
    assert topk_jaccard(points, other) == whole


def test_centred_cosine_gives_a_constant_guess_nothing(clustered):
    points, _ = clustered
    shifted = points + 20.0  # a large shared mean direction, as trained embeddings have
    guess = shifted.mean(dim=0).expand_as(shifted)
    assert matched_cosine(guess, shifted) > 0.9 and centred_cosine(guess, shifted) == pytest.approx(0.0)
    assert centred_cosine(shifted, shifted) == pytest.approx(1.0)


def test_neighbour_label_agreement_is_one_for_separated_classes_and_near_chance_for_shuffled_labels():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(4).repeat_interleave(50)
    centres = torch.randn(4, 16, generator=generator) * 10
    rows = centres[labels] + torch.randn(200, 16, generator=generator)
    assert neighbour_label_agreement(rows, labels) == 1.0
    shuffled = labels[torch.randperm(200, generator=generator)]
    assert abs(neighbour_label_agreement(rows, shuffled) - 0.25) < 0.1
    with pytest.raises(ValueError, match="k in"):
        neighbour_label_agreement(rows, labels, k=200)
