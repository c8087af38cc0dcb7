"""The learned product of invariances (``product-learned``, ``product-weighted``):
seeded, trained on the labelled public rows it is given and nothing else, better
than concatenation where a subspace is noise, and refused in one line without labels."""

import numpy as np
import pytest
import torch

from relatlas.aggregation.aggregators import PRODUCT_SIMILARITIES, aggregate, needs_labels
from relatlas.aggregation.learned_combine import LabelledRows, LabelsError, fit_weighted_sum
from relatlas.aggregation.merge import standardize_rows
from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.splits import FederationPlan
from relatlas.server.cli_report import results_table
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.evaluation import ProbeSplit, evaluate_round, split_public
from relatlas.server.preflight import refuse_bad_input
from relatlas.server.run_setup import RunSetup

CLASSES, ANCHORS = 4, 16
INFORMATIVE = PRODUCT_SIMILARITIES[:3]
CENTRES = torch.randn(CLASSES, ANCHORS, generator=torch.Generator().manual_seed(99))


def _clients(labels: torch.Tensor, seed: int, signal: float = 0.25, clients: int = 2) -> list[dict[str, torch.Tensor]]:
    """Cosine, Euclidean and L1 carry a weak class signal; L-infinity is pure noise, five times wider."""
    gen = torch.Generator().manual_seed(seed)
    spaces = []
    for _ in range(clients):
        space = {name: signal * CENTRES[labels] + torch.randn(len(labels), ANCHORS, generator=gen) for name in INFORMATIVE}
        spaces.append(space | {"linf": 5 * torch.randn(len(labels), ANCHORS, generator=gen)})
    return spaces


def _labelled(seed: int, fit_seed: int = 0, rows: int = 64) -> LabelledRows:
    labels = torch.arange(rows) % CLASSES
    return LabelledRows(_clients(labels, seed), labels, fit_seed)


def _probes(labels: np.ndarray, train: int) -> ProbeSplit:
    return ProbeSplit(np.arange(train), np.arange(train, len(labels)), labels, CLASSES, epochs=30, seed=0)


def _plan(clients: int = 2) -> FederationPlan:
    empty = np.empty(0, dtype=np.int64)
    return FederationPlan(empty, (empty,) * clients, (tuple(range(CLASSES)),) * clients, tuple(range(CLASSES)))


@pytest.mark.parametrize("aggregation", ["product-learned", "product-weighted"])
def test_the_learned_combination_is_seeded(aggregation):
    spaces = _clients(torch.arange(40) % CLASSES, seed=1)
    first = aggregate(aggregation, spaces, labelled=_labelled(2))
    torch.testing.assert_close(aggregate(aggregation, spaces, labelled=_labelled(2)), first, atol=0, rtol=0)
    assert first.shape == (40, ANCHORS) and needs_labels(aggregation) and not needs_labels("product")
    assert not torch.allclose(aggregate(aggregation, spaces, labelled=_labelled(2, fit_seed=1)), first)


def test_the_learned_combination_learns_from_the_labelled_rows_and_never_from_the_scored_samples():
    labels = np.arange(80) % CLASSES
    spaces, labelled = _clients(torch.as_tensor(labels), seed=1), _labelled(2)
    _, merged, _ = evaluate_round("product-learned", spaces, [0, 1], _probes(labels, 40), _plan(), labelled=labelled)
    shuffled = np.random.default_rng(0).permutation(labels)
    _, again, _ = evaluate_round("product-learned", spaces, [0, 1], _probes(shuffled, 40), _plan(), labelled=labelled)
    torch.testing.assert_close(again, merged, atol=0, rtol=0)  # other evaluation labels: the same merged space
    relabelled = LabelledRows(labelled.spaces, labelled.labels.roll(1), labelled.seed)
    _, moved, _ = evaluate_round("product-learned", spaces, [0, 1], _probes(labels, 40), _plan(), labelled=relabelled)
    assert not torch.allclose(moved, merged)  # other labels of the public rows: another combination


def test_with_a_noise_subspace_the_learned_combinations_match_or_beat_concatenation():
    """Scored as the server scores a merge: a probe trained on a few labelled evaluation
    rows, tested on the rest. Concatenation hands the probe the noise subspace whole;
    a combination trained on the public rows weighs it down."""
    labels = np.arange(400) % CLASSES
    scores: dict[str, list[float]] = {"product": [], "product-learned": [], "product-weighted": []}
    for seed in (0, 1):
        spaces, labelled = _clients(torch.as_tensor(labels), seed), _labelled(seed + 10)
        probes = ProbeSplit(np.arange(40), np.arange(200, 400), labels, CLASSES, epochs=30, seed=0)
        for aggregation, runs in scores.items():
            runs.append(probes.accuracy(aggregate(aggregation, spaces, labelled=labelled)))
    concat, learned, weighted = (float(np.mean(runs)) for runs in scores.values())
    assert learned >= concat - 0.01, scores
    assert weighted >= concat + 0.05, scores


def test_the_weighted_combination_weighs_the_noise_subspace_down():
    labelled = _labelled(10)
    combine = fit_weighted_sum([standardize_rows(labelled.spaces[0][name]) for name in PRODUCT_SIMILARITIES], labelled.labels, 0)
    units = torch.eye(len(PRODUCT_SIMILARITIES))[:, :, None, None].expand(-1, -1, 1, ANCHORS)  # subspace k alone, all ones
    weights = [float(combine(list(unit))[0, 0]) for unit in units]  # untrained: 0.25 each
    assert weights[3] < 0.5 * min(weights[:3]), weights


def test_a_learned_combination_without_labelled_rows_is_one_line():
    spaces = _clients(torch.arange(8) % CLASSES, seed=0)
    one_line = r"^aggregation 'product-learned' learns its combination from labelled public rows [^\n]*$"
    with pytest.raises(LabelsError, match=one_line):
        aggregate("product-learned", spaces)
    with pytest.raises(LabelsError, match=r"^labelled rows hold 1 class; a learned combination needs at least 2"):
        LabelledRows(spaces, torch.zeros(8, dtype=torch.long))
    with pytest.raises(LabelsError, match=r"^labelled rows: 7 labels for subspaces of \[8\] rows$"):
        LabelledRows(spaces, torch.arange(7) % 2)
    with pytest.raises(LabelsError, match=r"^labelled rows: labels must be a 1-D integer tensor"):
        LabelledRows(spaces, torch.ones(8))


def test_a_run_whose_anchors_hold_one_class_is_refused_before_it_starts(tmp_path):
    config = RunConfig(dataset="digits", shared_classes=1, aggregation="product-learned", encoder="mlp",
                       out_dir=str(tmp_path / "run"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")  # fmt: skip
    refused = r"^aggregation product-learned learns from the anchors' labels, and the 64 anchors hold 1 class"
    with pytest.raises(ConfigError, match=refused):
        refuse_bad_input(config)


def test_the_server_sends_the_anchors_after_the_samples_and_learns_from_their_labels_only():
    config = RunConfig(dataset="digits", aggregation="product-learned", encoder="mlp", eval_samples=100)
    setup, dataset = RunSetup.prepare(config), load_dataset("digits", None, 0)
    anchors = setup.plan.anchor_indices
    assert len(setup.labels) == 100 and setup.expected.num_samples == 100 + len(anchors)
    np.testing.assert_array_equal(setup.samples[100:], dataset.x_train[anchors])
    np.testing.assert_array_equal(setup.public_labels, dataset.y_train[anchors])
    rows = [{name: torch.arange(len(setup.samples), dtype=torch.float32)[:, None].expand(-1, 3) for name in PRODUCT_SIMILARITIES}]
    scored, labelled = split_public(rows, len(setup.labels), setup.public_labels, config.seed)
    assert len(scored[0]["cosine"]) == 100 and labelled is not None and float(labelled.spaces[0]["l1"][0, 0]) == 100.0
    assert RunSetup.prepare(RunConfig(dataset="digits", aggregation="product", eval_samples=100)).public_labels is None


def test_the_report_says_a_learned_merge_is_not_label_free():
    results = {"config": {"aggregation": "product-weighted", "dataset": "digits", "split": "same-classes"}, "status": "completed"}
    labels, _ = (column._cells for column in results_table(results | {"merged_accuracy": 0.9}).columns)
    assert "merged (product-weighted, combination learned from the anchors' labels)" in labels
    assert not any("label-free" in label for label in labels)
