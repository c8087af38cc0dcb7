"""CaSpeR: the spectral loss on graphs with known components, its gradient path,
and the plugin inside Avalanche's own rehearsal strategies."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin

from relatlas.benchmarks.casper import (
    CasperError,
    CaSpeRPlugin,
    balanced_batch,
    casper_loss,
    distinct_union,
    hard_knn,
    knn_adjacency,
    log1mexp,
    normalized_laplacian,
    soft_knn,
    spectral_gap_loss,
    squared_distances,
)
from relatlas.benchmarks.streams import DatasetRef, class_schedule, client_stream
from relatlas.clients.continual import build_strategy, train_experience
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.models import build_classifier


def _clusters(p: int, per: int, spread: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(p, 8, generator=gen) * spread
    return centres.repeat_interleave(per, dim=0) + torch.randn(p * per, 8, generator=gen)


def _hard_graph_loss(features: torch.Tensor, p: int, k: int) -> torch.Tensor:
    """The loss of the binary graph alone, computed without the soft relaxation."""
    adjacency = hard_knn(squared_distances(features.detach().double()), k)
    return spectral_gap_loss(torch.linalg.eigvalsh(normalized_laplacian(adjacency)), p)


def test_loss_indexes_one_higher_than_the_paper_on_graphs_with_known_components():
    blocks = torch.block_diag(*[torch.ones(m, m) - torch.eye(m) for m in (4, 5, 6)]).double()  # three disjoint cliques
    eigenvalues = torch.linalg.eigvalsh(normalized_laplacian(blocks))
    assert torch.allclose(eigenvalues[:3], torch.zeros(3, dtype=torch.float64), atol=1e-9)
    assert eigenvalues[3] == pytest.approx(6 / 5)  # a clique of m has eigenvalue m / (m - 1)
    # p components: l_1..l_p are 0, so the loss is l_{p+1} - l_{p+2}
    assert spectral_gap_loss(eigenvalues, 3) == pytest.approx((eigenvalues[3] - eigenvalues[4]).item())
    # p + 1 components score -l_{p+2}, lower: the reference's form rewards one more split
    assert spectral_gap_loss(eigenvalues, 2) == pytest.approx(-eigenvalues[3].item())
    with pytest.raises(ValueError, match="needs at least 17 eigenvalues"):
        spectral_gap_loss(eigenvalues, 15)


def test_separated_clusters_make_a_graph_of_p_components():
    features = _clusters(3, 12, spread=50.0)
    adjacency = knn_adjacency(features.double(), k=5)
    eigenvalues = torch.linalg.eigvalsh(normalized_laplacian(adjacency.detach()))
    assert torch.equal(adjacency, adjacency.T) and torch.all(adjacency.diagonal() == 0)
    assert set(adjacency.detach().unique().tolist()) == {0.0, 1.0}  # binary in value
    assert (eigenvalues < 1e-9).sum() == 3 and eigenvalues[3] > 0.1
    assert casper_loss(features, p=3, k=5) < casper_loss(_clusters(3, 12, spread=0.0), p=3, k=5)


def test_default_loss_is_the_hard_graph_loss_with_a_gradient_to_the_embedder():
    model = build_classifier((64,), 10, encoder="mlp", seed=0)
    inputs = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    features = model.embedder(inputs).double()
    loss = casper_loss(features, p=2, k=10)
    assert torch.equal(knn_adjacency(features, 10).detach(), hard_knn(squared_distances(features.detach()), 10))
    assert loss.item() == pytest.approx(_hard_graph_loss(features, 2, 10).item(), rel=1e-12)  # the binary graph's value
    loss.backward()
    grads = [param.grad for param in model.embedder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_log1mexp_is_exact_and_its_gradient_stays_finite_at_zero():
    x = torch.tensor([-50.0, -2.0, -math.log(2), -1e-3, -1e-12, 0.0], dtype=torch.float64, requires_grad=True)
    exact = [float((1 - Decimal(v).exp()).ln()) if v < 0 else -math.inf for v in x.tolist()]  # 28 significant digits
    expected = torch.tensor(exact, dtype=torch.float64)
    assert torch.allclose(log1mexp(x), expected, rtol=1e-12)
    log1mexp(x)[:-1].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_soft_knn_spends_k_units_per_row_and_sharpens_to_the_hard_neighbours():
    d2 = squared_distances(_clusters(2, 10, spread=3.0).double())
    soft = soft_knn(d2, k=4)
    assert torch.allclose(soft.sum(dim=1), torch.full((20,), 4.0, dtype=torch.float64))
    assert torch.all(soft.diagonal() == 0)
    sharp = soft_knn(d2 * 1e4, k=4)  # far apart on the scale of temperature 1: the relaxation is the hard top-k
    eye = torch.eye(20, dtype=torch.bool)
    hard = torch.zeros(20, 20, dtype=torch.float64).scatter_(1, d2.masked_fill(eye, math.inf).topk(4, largest=False).indices, 1)
    assert torch.allclose(sharp, hard, atol=1e-6)


def test_union_keeps_each_input_once_in_order_of_appearance():
    buffer = (torch.arange(12.0).reshape(4, 3), torch.tensor([0, 0, 1, 1]))
    minibatch = (torch.cat([torch.full((2, 3), 100.0), buffer[0][[1, 3]]]), torch.tensor([2, 2, 0, 1]))
    minibatch[0][1] += 1
    x, y = distinct_union(buffer, minibatch)
    assert torch.equal(x, torch.cat([buffer[0], minibatch[0][:2]])) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_balanced_batch_draws_from_its_own_generator_only():
    labels = torch.tensor([0] * 30 + [1] * 30 + [2] * 5)
    state = torch.get_rng_state()
    rows, drawn = balanced_batch(labels, classes=3, size=30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert drawn == 3 and sorted(torch.bincount(labels[rows], minlength=3).tolist()) == [5, 10, 10]
    again, _ = balanced_batch(labels, classes=3, size=30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(rows, again)
    assert balanced_batch(labels, classes=5, size=30, generator=torch.Generator())[1] == 3  # fewer classes present


def _two_experiences_of_digits():
    ref = DatasetRef("digits", "", 0)
    data = ref.load()
    schedule = class_schedule(data.num_classes, 2, "class-incremental", seed=0)
    rows = np.flatnonzero(np.isin(data.y_train, schedule[0][:2] + schedule[1][:2]))
    return data, client_stream(ref, rows, schedule, "class-incremental", seed=0), schedule[1][:2]


class _Recorder(SupervisedPlugin):
    """Keeps the labels of every training minibatch and, as CaSpeR's ``features``
    function, every graph batch it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.minibatches: list[list[int]] = []
        self.graphs: list[torch.Tensor] = []

    def before_backward(self, strategy, **kwargs) -> None:
        self.minibatches.append(strategy.mb_y.tolist())

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.graphs.append(x.detach().clone())
        return model.embedder(x)


def _train_two(strategy: str, rho: float) -> tuple[CaSpeRPlugin, _Recorder, set[int], np.ndarray]:
    """Two experiences with CaSpeR watched by a recorder; also returns the second
    experience's classes and the label of each graph-batch sample."""
    data, benchmark, current = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    config = ContinualConfig(strategy=strategy, regularizer="casper", buffer=60, casper_rho=rho, casper_batch=16, casper_k=5)
    learner = build_strategy(model, config, seed=0)
    casper = next(p for p in learner.plugins if isinstance(p, CaSpeRPlugin))
    casper.features = recorder = _Recorder()
    learner.plugins.append(recorder)
    train_experience(learner, benchmark, 0, seed=0)
    assert casper.last_loss == 0.0 and recorder.graphs == []  # inactive on the first experience
    train_experience(learner, benchmark, 1, seed=1)
    inputs = torch.as_tensor(np.array(data.x_train), dtype=torch.float32)
    graph_rows = [torch.nonzero((inputs == row).all(dim=1))[0, 0].item() for g in recorder.graphs for row in g]
    return casper, recorder, set(current), data.y_train[graph_rows]


@pytest.mark.parametrize("strategy", ["replay", "er-ace", "der"])
def test_plugin_graphs_hold_the_classes_being_learned_and_move_no_other_random_stream(strategy):
    casper, recorder, current, graph_labels = _train_two(strategy, rho=0.01)
    assert casper.last_loss != 0.0 and np.isfinite(casper.last_loss)
    assert {len(g) for g in recorder.graphs} == {16}  # the graph batch: 2 classes (per experience), 8 samples each
    assert current <= set(graph_labels.tolist())  # Replay's and DER's buffers alone hold past classes only
    inert, silent, _, _ = _train_two(strategy, rho=0.0)
    assert silent.graphs == [] and inert.last_loss == 0.0  # rho 0 draws and computes nothing
    assert torch.equal(inert.generator.get_state(), torch.Generator().manual_seed(inert.generator.initial_seed()).get_state())
    assert recorder.minibatches == silent.minibatches  # the same minibatches with CaSpeR on: no other stream moved


def test_plugin_refuses_a_strategy_without_a_buffer():
    data, benchmark, _ = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    learner = build_strategy(model, ContinualConfig(strategy="naive"), seed=0)
    learner.plugins.append(CaSpeRPlugin())
    with pytest.raises(CasperError, match="Naive has none"):
        learner.train(benchmark.train_stream[0])
