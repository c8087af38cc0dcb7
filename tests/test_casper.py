"""CaSpeR: the spectral loss on graphs with known components, its gradient path,
its class-balanced reservoir, and the plugin inside Avalanche's own rehearsal strategies."""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal

import numpy as np
import pytest
import torch
from avalanche.core import SupervisedPlugin
from hypothesis import given, settings
from hypothesis import strategies as st

from relatlas.benchmarks.balanced_reservoir import BalancedReservoir
from relatlas.benchmarks.casper import (
    CasperError,
    CaSpeRPlugin,
    casper_loss,
    hard_knn,
    knn_adjacency,
    log1mexp,
    normalized_laplacian,
    soft_knn,
    spectral_gap_loss,
    squared_distances,
)
from relatlas.benchmarks.rehearsal import restore_buffer, save_buffer
from relatlas.benchmarks.streams import DatasetRef, class_schedule, client_stream
from relatlas.clients.continual import build_strategy, train_experience
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.models import build_classifier
from relatlas.sections import ContinualSection, ModelSection


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


def _reservoir(labels: list[int], capacity: int | None = None) -> BalancedReservoir:
    """A reservoir holding ``labels`` in order; each input is its row's position, to tell rows apart."""
    reservoir = BalancedReservoir(capacity or len(labels))
    y = torch.tensor(labels)
    reservoir.add(torch.arange(len(y), dtype=torch.float32)[:, None], y, torch.Generator())
    return reservoir


@settings(max_examples=12, deadline=None)
@given(capacity=st.integers(20, 120), batch=st.integers(1, 64), seed=st.integers(0, 2**16))
def test_reservoir_stays_class_balanced_over_a_class_incremental_stream(capacity, batch, seed):
    """Five tasks of two classes each, offered a batch at a time: after each task every
    class seen so far holds within two samples of every other, none is lost, and
    each input stays beside its own label."""
    gen = torch.Generator().manual_seed(seed)
    reservoir = BalancedReservoir(capacity)
    for task in range(5):
        size = int(torch.randint(200, 800, (1,), generator=gen))
        labels = torch.tensor([2 * task, 2 * task + 1])[torch.randint(2, (size,), generator=gen)]
        for start in range(0, len(labels), batch):
            y = labels[start : start + batch]
            reservoir.add(y[:, None].float() * 10, y, gen)
        counts = torch.bincount(reservoir.held_labels(), minlength=2 * task + 2)
        assert len(reservoir) == capacity and counts.max() - counts.min() <= 2, counts.tolist()
        assert torch.equal(reservoir.inputs[:, 0], reservoir.labels.float() * 10)
        assert reservoir.counts == Counter(reservoir.held_labels().tolist())  # the running counts, unlike Mammoth's


def test_a_full_reservoir_takes_a_new_class_in_place_of_the_largest():
    reservoir = _reservoir([0, 0, 0, 1])
    reservoir.add(torch.tensor([[9.0]]), torch.tensor([2]), torch.Generator().manual_seed(0))  # class 2: below the median
    assert sorted(reservoir.held_labels().tolist()) == [0, 0, 1, 2] and reservoir.seen == 5


def test_draw_takes_classes_with_a_full_share_and_spreads_the_remainder():
    reservoir = _reservoir([0] * 10 + [1] * 10 + [2] * 10 + [3] * 5)
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        counts = torch.bincount(reservoir.held_labels()[reservoir.draw(17, 3, gen)], minlength=4)
        assert counts[3] == 0 and sorted(counts.tolist()) == [0, 5, 6, 6]  # 17 // 3 each, 2 left over: one each; 5 < 6
    assert torch.bincount(reservoir.held_labels()[reservoir.draw(15, 3, torch.Generator())], minlength=4)[3] in (0, 5)


def test_draw_narrows_to_the_classes_that_qualify_or_else_samples_uniformly():
    two_full = _reservoir([0] * 10 + [1] * 10 + [2] * 3)
    rows = two_full.draw(12, 3, torch.Generator())  # shares 4, 4, 4: class 2 cannot give one, so 2 classes of 6
    assert torch.bincount(two_full.held_labels()[rows], minlength=3).tolist() == [6, 6, 0]
    none_full = _reservoir([0] * 10 + [1] * 3 + [2] * 3)
    rows = none_full.draw(12, 3, torch.Generator())  # one class would need all 12: none has them
    assert len(rows) == 12 and len(rows.unique()) == 12
    assert len(none_full.draw(40, 3, torch.Generator())) == 16  # no more than it holds


def test_reservoir_draws_from_its_own_generator_only():
    state = torch.get_rng_state()
    reservoir = _reservoir([0] * 30 + [1] * 30 + [2] * 30, capacity=40)  # 50 offered to a full reservoir
    rows = reservoir.draw(30, 3, torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(rows, reservoir.draw(30, 3, torch.Generator().manual_seed(0)))


def _two_experiences_of_digits():
    """Digits cut into 2 experiences of 5 classes; this learner holds 2 of each."""
    ref = DatasetRef("digits", "", 0)
    data = ref.load()
    schedule = class_schedule(data.num_classes, 2, "class-incremental", seed=0)
    rows = np.flatnonzero(np.isin(data.y_train, schedule[0][:2] + schedule[1][:2]))
    return data, client_stream(ref, rows, schedule, "class-incremental", seed=0), schedule


class _Recorder(SupervisedPlugin):
    """Keeps the labels of every training minibatch and, as CaSpeR's ``augment`` and
    ``features`` functions, every graph batch it augments and embeds, with its loss at p = 5."""

    def __init__(self) -> None:
        super().__init__()
        self.minibatches: list[list[int]] = []
        self.augmented: list[torch.Tensor] = []
        self.graphs: list[torch.Tensor] = []
        self.losses: list[float] = []

    def before_backward(self, strategy, **kwargs) -> None:
        self.minibatches.append(strategy.mb_y.tolist())

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        self.augmented.append(x.detach().clone())
        return x

    def __call__(self, model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        self.graphs.append(x.detach().clone())
        features = model.embedder(x)
        self.losses.append(float(casper_loss(features.detach(), p=5, k=5)))
        return features


def _train_two(strategy: str, rho: float):
    """Two experiences with CaSpeR watched by a recorder; also returns the second
    experience's classes, the label of each graph-batch sample, the learner and its stream."""
    data, benchmark, schedule = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    config = ContinualConfig(
        strategy=strategy, regularizer="casper", buffer=60, casper_rho=rho, casper_batch=16, casper_k=5,
        experience_classes=tuple(len(classes) for classes in schedule),
    )  # fmt: skip
    learner = build_strategy(model, config, seed=0)
    casper = next(p for p in learner.plugins if isinstance(p, CaSpeRPlugin))
    recorder = _Recorder()
    casper.features, casper.augment = recorder, recorder.augment
    learner.plugins.append(recorder)
    train_experience(learner, benchmark, 0, seed=0)
    assert casper.last_loss == 0.0 and recorder.graphs == []  # inactive on the first experience
    train_experience(learner, benchmark, 1, seed=1)
    inputs = torch.as_tensor(np.array(data.x_train), dtype=torch.float32)
    graph_rows = [torch.nonzero((inputs == row).all(dim=1))[0, 0].item() for g in recorder.graphs for row in g]
    return casper, recorder, set(schedule[1][:2]), data.y_train[graph_rows], learner, benchmark


@pytest.mark.parametrize("strategy", ["replay", "er-ace", "der"])
def test_plugin_graphs_hold_the_classes_being_learned_and_move_no_other_random_stream(strategy):
    casper, recorder, current, graph_labels, learner, benchmark = _train_two(strategy, rho=0.01)
    assert casper.last_loss != 0.0 and np.isfinite(casper.last_loss)
    assert casper.last_loss == pytest.approx(recorder.losses[-1])  # p = 5, the stream's classes per task, though 4 are held
    assert {len(g) for g in recorder.graphs} == {16}  # 4 classes qualify for p = 5: 4 samples of each
    assert all(torch.equal(a, g) for a, g in zip(recorder.augmented, recorder.graphs, strict=True))  # augmented, then embedded
    assert current <= set(graph_labels.tolist())  # the reservoir takes in the experience being learned
    counts = torch.bincount(casper.reservoir.held_labels())
    assert len(casper.reservoir) == 60 and len(counts[counts > 0]) == 4 and counts.max() - counts[counts > 0].min() <= 2
    assert casper.reservoir.seen == sum(len(e.dataset) for e in benchmark.train_stream)  # one epoch each; no replayed sample

    config = ContinualConfig(strategy=strategy, regularizer="casper", buffer=60, casper_classes=5)
    fresh = build_strategy(learner.model, config, seed=0)
    restore_buffer(fresh, save_buffer(learner))  # the reservoir outlives the round, as the buffer does
    restored = next(p for p in fresh.plugins if isinstance(p, CaSpeRPlugin)).reservoir
    assert restored.seen == casper.reservoir.seen and torch.equal(restored.held_labels(), casper.reservoir.held_labels())
    assert restored.counts == casper.reservoir.counts
    assert torch.equal(restored.inputs[: len(restored)], casper.reservoir.inputs[: len(restored)])

    inert, silent, *_ = _train_two(strategy, rho=0.0)
    assert silent.graphs == [] and inert.last_loss == 0.0 and inert.reservoir.seen == 0  # rho 0 keeps, draws and computes nothing
    assert torch.equal(inert.generator.get_state(), torch.Generator().manual_seed(inert.generator.initial_seed()).get_state())
    assert recorder.minibatches == silent.minibatches  # the same minibatches with CaSpeR on: no other stream moved


def test_plugin_refuses_a_strategy_without_a_buffer_and_a_graph_batch_too_small_for_p():
    data, benchmark, _ = _two_experiences_of_digits()
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    learner = build_strategy(model, ContinualConfig(strategy="naive"), seed=0)
    learner.plugins.append(CaSpeRPlugin(classes=2))
    with pytest.raises(CasperError, match="Naive has none"):
        learner.train(benchmark.train_stream[0])
    learner = build_strategy(model, ContinualConfig(strategy="replay"), seed=0)
    learner.plugins.append(CaSpeRPlugin(classes=(20, 20), batch=16, k=5))
    with pytest.raises(CasperError, match="graph batch of 16 needs .* p \\+ 2 = 22"):
        learner.train(benchmark.train_stream[0])
    with pytest.raises(ValueError, match="classes >= 1"):
        CaSpeRPlugin()
    with pytest.raises(ValueError, match="regularizer casper needs its p"):
        build_strategy(model, ContinualConfig(strategy="replay", regularizer="casper"), seed=0)


def test_p_defaults_to_the_classes_the_stream_gives_each_experience():
    schedule = class_schedule(10, 3, "class-incremental", seed=0)
    config = ContinualConfig.from_sections(ModelSection(), ContinualSection(regularizer="casper"), schedule)
    assert sorted(config.experience_classes) == [3, 3, 4]
    model = build_classifier((64,), 10, encoder="mlp", seed=0)
    casper = next(p for p in build_strategy(model, config, seed=0).plugins if isinstance(p, CaSpeRPlugin))
    assert [casper.classes_for(e) for e in range(3)] == [len(classes) for classes in schedule]
