"""CaSpeR: the spectral loss on known graphs and clusters, and the plugin inside
Avalanche's own rehearsal strategies."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.casper import CasperError, CaSpeRPlugin, casper_loss, knn_adjacency, normalized_laplacian, spectral_gap_loss
from benchmarks.streams import DatasetRef, class_schedule, client_stream
from clients.continual import ContinualConfig, build_strategy, train_experience
from clients.models import build_classifier


def _clusters(p: int, per: int, spread: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(p, 8, generator=gen) * spread
    return (centres.repeat_interleave(per, dim=0) + torch.randn(p * per, 8, generator=gen)).requires_grad_()


def test_graph_with_p_components_has_p_zero_eigenvalues_and_a_gap():
    blocks = torch.block_diag(*[torch.ones(4, 4) - torch.eye(4)] * 3)  # three disjoint 4-cliques
    eigenvalues = torch.linalg.eigvalsh(normalized_laplacian(blocks.double()))
    assert torch.allclose(eigenvalues[:3], torch.zeros(3, dtype=torch.float64), atol=1e-9)
    assert eigenvalues[3] > 1.0
    assert spectral_gap_loss(eigenvalues, 3, "paper") == pytest.approx(-eigenvalues[3].item())
    # the reference code's indexing counts the first non-zero eigenvalue in the sum
    reference = spectral_gap_loss(eigenvalues, 3, "reference")
    assert reference == pytest.approx((eigenvalues[3] - eigenvalues[4]).item())


def test_knn_graph_is_symmetric_without_self_loops():
    adjacency = knn_adjacency(torch.randn(30, 5, generator=torch.Generator().manual_seed(1)), k=4)
    assert torch.equal(adjacency, adjacency.T)
    assert torch.all(adjacency.diagonal() == 0)
    assert torch.all((adjacency > 0).sum(dim=1) >= 4)


@pytest.mark.parametrize("indexing", ["paper", "reference"])
def test_separated_clusters_score_lower_than_mixed_ones_with_finite_gradients(indexing):
    separated, mixed = _clusters(4, 16, spread=8.0), _clusters(4, 16, spread=0.0)
    loss_separated = casper_loss(separated, p=4, k=10, indexing=indexing)
    loss_mixed = casper_loss(mixed, p=4, k=10, indexing=indexing)
    assert loss_separated < loss_mixed
    loss_mixed.backward()
    assert mixed.grad is not None and torch.isfinite(mixed.grad).all() and mixed.grad.abs().sum() > 0


def test_hard_graph_has_no_gradient_to_give():
    features = _clusters(3, 10, spread=5.0)
    assert not casper_loss(features, p=3, k=5, soft=False).requires_grad


def _two_experiences_of_digits():
    ref = DatasetRef("digits", "", 0)
    data = ref.load()
    schedule = class_schedule(data.num_classes, 2, "class-incremental", seed=0)
    rows = np.flatnonzero(np.isin(data.y_train, schedule[0][:2] + schedule[1][:2]))
    return data, client_stream(ref, rows, schedule, "class-incremental", seed=0)


@pytest.mark.parametrize("strategy", ["replay", "er-ace", "der"])
def test_plugin_composes_with_avalanche_rehearsal(strategy):
    data, benchmark = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    config = ContinualConfig(strategy=strategy, regularizer="casper", buffer=60, casper_per_class=8, casper_k=5)
    learner = build_strategy(model, config)
    casper = next(p for p in learner.plugins if isinstance(p, CaSpeRPlugin))
    train_experience(learner, benchmark, 0, seed=0)
    assert casper.last_loss == 0.0  # inactive on the first experience
    result = train_experience(learner, benchmark, 1, seed=1)
    assert casper.last_loss != 0.0 and np.isfinite(casper.last_loss)
    assert len(result.head_accuracy) == 2


def test_plugin_refuses_a_strategy_without_a_buffer():
    data, benchmark = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    learner = build_strategy(model, ContinualConfig(strategy="naive"))
    learner.plugins.append(CaSpeRPlugin())
    with pytest.raises(CasperError, match="Naive has none"):
        learner.train(benchmark.train_stream[0])
