"""What a merged space is worth: probe accuracies, stitching and similarity to
the centralised space, on a seeded split of the evaluation samples.

Headline: ``merged_accuracy``, the label-free merge (every client projects every
sample, the server merges without labels). ``owner_accuracy`` reproduces the
paper's protocol, which picks each sample's source client by its label, and is
reported only as that; ``owner_shuffled_accuracy`` is its control, the same
label-chosen pick from a client that does not own the class.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.aggregation.aggregators import ClientSpace, aggregate, required_similarities
from relatlas.aggregation.learned_combine import LabelledRows
from relatlas.aggregation.measures import linear_cka, topk_jaccard
from relatlas.aggregation.merge import concat_merge
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients.training import TrainConfig, fit, predict, torch_threads

PROBE_HIDDEN = 256
# A probe's steps are too small to gain from a second thread, and where another thread of the process
# has used torch first (the server scores in Flower's ServerApp thread) two threads made them about 3 times
# slower than one (2 cores, measured: 1.7 s against 0.57 s for one probe)
PROBE_THREADS = 1


@dataclass(frozen=True)
class Probe:
    """An MLP classifier on standardised features (statistics of its training rows)."""

    model: nn.Module
    mean: Tensor
    std: Tensor

    def correct(self, features: Tensor, labels: np.ndarray) -> np.ndarray:
        """Per sample: whether the probe predicts its label."""
        logits = predict(self.model, (features - self.mean) / self.std)
        return logits.argmax(dim=1).numpy() == labels

    def accuracy(self, features: Tensor, labels: np.ndarray) -> float:
        return float(self.correct(features, labels).mean())


def train_probe(features: Tensor, labels: np.ndarray, num_classes: int, *, epochs: int, seed: int) -> Probe:
    mean, std = features.mean(dim=0), features.std(dim=0) + 1e-6
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(features.shape[1], PROBE_HIDDEN), nn.ReLU(), nn.Linear(PROBE_HIDDEN, num_classes))
    with torch_threads(PROBE_THREADS):
        fit(model, (features - mean) / std, labels, TrainConfig(epochs=epochs, seed=seed))
    return Probe(model, mean, std)


@dataclass(frozen=True)
class ProbeSplit:
    """Evaluation samples the probes train on, and those they are scored on."""

    train: np.ndarray
    test: np.ndarray
    labels: np.ndarray
    num_classes: int
    epochs: int
    seed: int

    def fit(self, space: Tensor) -> Probe:
        """Every probe starts from the same seed, so spaces are compared on equal terms."""
        return train_probe(space[self.train], self.labels[self.train], self.num_classes, epochs=self.epochs, seed=self.seed)

    def score(self, probe: Probe, space: Tensor) -> float:
        return probe.accuracy(space[self.test], self.labels[self.test])

    def accuracy(self, space: Tensor) -> float:
        return self.score(self.fit(space), space)

    def stitching(self, probe: Probe, space: Tensor, classes: Sequence[int]) -> tuple[float, float | None, float | None]:
        """(all, ``classes``, other classes) accuracy of ``probe`` on ``space``: a client's
        space is scored apart on the classes it trained on, since it never saw the others."""
        correct = probe.correct(space[self.test], self.labels[self.test])
        seen = np.isin(self.labels[self.test], classes)
        return float(correct.mean()), _mean_or_none(correct[seen]), _mean_or_none(correct[~seen])


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def owner_masks(plan: FederationPlan, partitions: Sequence[int], labels: np.ndarray) -> Tensor:
    """[K, N]: client k "owns" sample i if its task holds the sample's class (all
    clients if none does). Uses labels: the paper's protocol, not label-free."""
    masks = torch.tensor(np.array([np.isin(labels, plan.client_classes[p]) for p in partitions]))
    orphans = ~masks.any(dim=0)
    masks[:, orphans] = True
    return masks


def shuffled_owner_masks(masks: Tensor) -> Tensor:
    """``owner_masks`` with client k's samples given to client k+1 (mod K), a fixed
    derangement of the clients that answered: a class only some clients own gets
    another owner set (a one-owner class, e.g. a novel class, a non-owner), still
    chosen by its label; a class all clients own stays with all. The control of the owner protocol: if it scores as high, the
    protocol's score comes from the label-chosen pick, not from the owner's space."""
    return masks.roll(1, dims=0)


def split_public(
    spaces: Sequence[ClientSpace], scored: int, public_labels: np.ndarray | None, seed: int
) -> tuple[list[ClientSpace], LabelledRows | None]:
    """The rows every client projected, parted: the first ``scored`` (the evaluation
    samples) and, where ``public_labels`` is given (a merge that learns from labels),
    the public labelled rows after them, with those labels only."""
    if public_labels is None:
        return list(spaces), None
    scored_rows = [{name: rows[:scored] for name, rows in space.items()} for space in spaces]
    public = [{name: rows[scored:] for name, rows in space.items()} for space in spaces]
    return scored_rows, LabelledRows(public, torch.as_tensor(np.asarray(public_labels), dtype=torch.long), seed)


def concat_baseline(aggregation: str, spaces: Sequence[ClientSpace]) -> Tensor:
    """The clients' spaces side by side, each subspace the run's aggregation asked
    for (so any aggregation, cosine or not, has the baseline of what was sent)."""
    names = required_similarities(aggregation)
    return concat_merge([space[name] for space in spaces for name in names])


def evaluate_round(
    aggregation: str,
    spaces: Sequence[ClientSpace],
    partitions: Sequence[int],
    probes: ProbeSplit,
    plan: FederationPlan,
    *,
    weights: Sequence[float] | None = None,
    absolute: Sequence[Tensor] | None = None,
    centralized: ClientSpace | None = None,
    client_scores: bool = True,
    hostile: int | None = None,
    labelled: LabelledRows | None = None,
    central_labelled: LabelledRows | None = None,
) -> tuple[dict[str, object], Tensor, Tensor | None]:
    """Metrics of one round, the merged space and the centralised space (same form).

    ``spaces`` and ``partitions`` list the clients that answered, in partition order.
    ``absolute`` and ``centralized`` exist in simulation only. ``client_scores``:
    also score each client's space, stitching and the concatenation, whose cost
    grows with the number of clients. ``hostile``: how many of the clients the
    robust merges must withstand (None: none declared). ``labelled`` (and for the
    centralised space ``central_labelled``): the public labelled rows a learned merge
    trains on; never the evaluation samples, whose labels only the probes see.
    """
    started = time.perf_counter()
    merged = aggregate(aggregation, spaces, weights=weights, hostile=hostile, labelled=labelled)
    merged_at = time.perf_counter()
    merged_probe = probes.fit(merged)
    own = [aggregate(aggregation, [space], labelled=labelled) for space in spaces] if client_scores else []
    stitched = [
        probes.stitching(merged_probe, space, plan.client_classes[p]) if space.shape == merged.shape else (None, None, None)
        for space, p in zip(own, partitions)
    ]
    metrics: dict[str, object] = {
        "merged_accuracy": probes.score(merged_probe, merged),
        "client_partitions": list(partitions),
        "client_accuracy": [probes.accuracy(space) for space in own],
        "stitched_accuracy": [total for total, _, _ in stitched],
        "stitched_own_classes_accuracy": [seen for _, seen, _ in stitched],
        "stitched_other_classes_accuracy": [other for _, _, other in stitched],
        "concat_accuracy": None,
        "owner_accuracy": None,
        "owner_shuffled_accuracy": None,
    }
    if aggregation == "concat":  # the merge is the concat baseline; do not train its probe twice
        metrics["concat_accuracy"] = metrics["merged_accuracy"]
    else:
        if client_scores:
            metrics["concat_accuracy"] = probes.accuracy(concat_baseline(aggregation, spaces))
        masks = owner_masks(plan, partitions, probes.labels)
        for key, chosen in (("owner_accuracy", masks), ("owner_shuffled_accuracy", shuffled_owner_masks(masks))):
            owned = aggregate(aggregation, spaces, weights=weights, masks=chosen, hostile=hostile, labelled=labelled)
            metrics[key] = probes.accuracy(owned)
    if absolute is not None:
        metrics["concat_absolute_accuracy"] = probes.accuracy(torch.cat(list(absolute), dim=1))
    central = None
    if centralized is not None:
        central_metrics, central = central_scores(aggregation, merged, centralized, probes, central_labelled)
        metrics |= central_metrics
    metrics["server_merge_seconds"] = merged_at - started  # the merge alone; probes and baselines are scoring
    metrics["server_scoring_seconds"] = time.perf_counter() - merged_at
    return metrics, merged, central


def central_scores(
    aggregation: str, merged: Tensor, centralized: ClientSpace, probes: ProbeSplit, central_labelled: LabelledRows | None = None
) -> tuple[dict[str, object], Tensor]:
    """The centralised space (the run's aggregation of the reference's space), its accuracy and its likeness to ``merged``."""
    central = aggregate(aggregation, [centralized], labelled=central_labelled)
    metrics = {
        "centralized_accuracy": probes.accuracy(central),
        "cka_merged_centralized": linear_cka(merged, central),
        "jaccard_merged_centralized": topk_jaccard(merged, central, k=5),
    }
    return metrics, central
