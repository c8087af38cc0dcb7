"""Top-k sparse relative representations."""

from __future__ import annotations

import pytest
import torch

from relatlas.aggregation.sparse import densify, topk_sparsify


def test_top_k_keeps_each_rows_largest_entries_and_densifies_back():
    relative = torch.tensor([[0.9, -0.2, 0.5, 0.1], [0.0, 0.7, 0.3, 0.8]])
    values, indices = topk_sparsify(relative, 2)
    assert indices.tolist() == [[0, 2], [3, 1]]
    dense = densify(values, indices, 4)
    assert dense.shape == (2, 4) and (dense[0, [1, 3]] == 0).all() and (dense[1, [0, 2]] == 0).all()
    assert torch.allclose(dense.norm(dim=1), torch.ones(2))
    assert torch.allclose(dense[0, [0, 2]], torch.nn.functional.normalize(torch.tensor([0.9, 0.5]), dim=0))


def test_power_sharpens_and_negative_similarities_count_as_zero():
    relative = torch.tensor([[0.9, 0.6, -0.5]])
    sharp, _ = topk_sparsify(relative, 2, power=8.0)
    flat, _ = topk_sparsify(relative, 2)
    assert sharp[0, 0] / sharp[0, 1] > flat[0, 0] / flat[0, 1]
    assert topk_sparsify(relative, 3)[0][0, 2] == 0.0


def test_k_must_fit_the_anchor_count():
    with pytest.raises(ValueError, match="1 <= k <= 3"):
        topk_sparsify(torch.rand(2, 3), 4)
