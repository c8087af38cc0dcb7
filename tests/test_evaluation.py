"""The server's metrics on small synthetic relative spaces: stitching split by the
classes each client trained on, and the owner protocol against its shuffled control."""

import numpy as np
import pytest
import torch

from relatlas.benchmarks.datasets import stratified_split
from relatlas.benchmarks.splits import FederationPlan
from relatlas.server.evaluation import ProbeSplit, evaluate_round, owner_masks, shuffled_owner_masks

SHARED = (0, 1)
NOVEL = {0: (2,), 1: (3,), 2: (4,)}  # partition -> its novel classes; class 5 belongs to nobody
CLASSES = 6


def _plan(novel: dict[int, tuple[int, ...]]) -> FederationPlan:
    classes = tuple(tuple(sorted(SHARED + novel[p])) for p in sorted(novel))
    return FederationPlan(np.empty(0, dtype=np.int64), tuple(np.empty(0, dtype=np.int64) for _ in novel), classes, SHARED)


def _owners(masks: torch.Tensor, labels: np.ndarray, cls: int) -> set[int]:
    """Row indices of the clients that own class ``cls`` (the same for all its samples)."""
    rows = {tuple(np.flatnonzero(masks[:, i].numpy())) for i in np.flatnonzero(labels == cls)}
    assert len(rows) == 1
    return set(rows.pop())


@pytest.mark.parametrize("partitions", [[0, 1, 2], [0, 2]])
def test_shuffled_owners_give_no_novel_class_its_owner_and_keep_shared_classes(partitions):
    plan, labels = _plan(NOVEL), np.repeat(np.arange(CLASSES), 3)
    masks = owner_masks(plan, partitions, labels)
    shuffled = shuffled_owner_masks(masks)
    everyone = set(range(len(partitions)))
    for cls in range(CLASSES):
        owners, moved = _owners(masks, labels, cls), _owners(shuffled, labels, cls)
        if owners == everyone:  # shared classes, and classes no client that answered trained on
            assert moved == everyone, cls
        else:
            assert len(moved) == len(owners) == 1 and moved.isdisjoint(owners), cls
    assert _owners(masks, labels, 2) == {0} and _owners(masks, labels, 3) == ({1} if len(partitions) == 3 else everyone)


def _spaces(labels: np.ndarray, novel: dict[int, tuple[int, ...]], seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Client p places the classes it trained on at their own one-hot direction and
    every other class near the origin: it knows its classes, not the others."""
    gen = torch.Generator().manual_seed(seed)
    spaces = []
    for p in sorted(novel):
        known = torch.tensor(np.isin(labels, SHARED + novel[p]), dtype=torch.float32)[:, None]
        signal = torch.nn.functional.one_hot(torch.as_tensor(labels), CLASSES).float() * known
        spaces.append({"cosine": signal + 0.05 * torch.randn(len(labels), CLASSES, generator=gen)})
    return spaces


def _probes(labels: np.ndarray) -> ProbeSplit:
    train, test = stratified_split(labels, 0.3, 0)
    return ProbeSplit(train, test, labels, CLASSES, epochs=30, seed=0)


def test_stitching_is_split_by_the_classes_each_client_trained_on():
    novel = NOVEL | {2: (2, 3, 4, 5)}  # client 2 trained on every class: nothing is "other" for it
    labels = np.repeat(np.arange(CLASSES), 60)
    probes = _probes(labels)
    metrics, _, _ = evaluate_round("mean", _spaces(labels, novel), [0, 1, 2], probes, _plan(novel))
    own, other = metrics["stitched_own_classes_accuracy"], metrics["stitched_other_classes_accuracy"]
    assert own[0] > 0.9 and own[1] > 0.9 and other[0] < 0.5 and other[1] < 0.5
    assert other[2] is None and own[2] == metrics["stitched_accuracy"][2]
    scored = labels[probes.test]
    for k, partition in enumerate([0, 1]):
        seen = np.isin(scored, SHARED + novel[partition]).mean()
        assert metrics["stitched_accuracy"][k] == pytest.approx(seen * own[k] + (1 - seen) * other[k])


def test_concat_has_no_stitching_nor_owner_protocol():
    labels = np.repeat(np.arange(CLASSES), 20)
    metrics, _, _ = evaluate_round("concat", _spaces(labels, NOVEL), [0, 1, 2], _probes(labels), _plan(NOVEL))
    for key in ("stitched_accuracy", "stitched_own_classes_accuracy", "stitched_other_classes_accuracy"):
        assert metrics[key] == [None, None, None], key
    assert metrics["owner_accuracy"] is None and metrics["owner_shuffled_accuracy"] is None
    assert metrics["server_merge_seconds"] > 0 and metrics["server_scoring_seconds"] > 0  # the round's split (bench perf)


def test_owner_protocol_beats_its_control_only_where_owners_know_their_classes():
    """Non-owners place a novel class near the origin here, so the shuffled pick
    loses the novel classes; on real spaces, a control as high as the owner's means
    the score comes from the label-chosen pick."""
    labels = np.repeat(np.arange(CLASSES), 60)
    metrics, _, _ = evaluate_round("mean", _spaces(labels, NOVEL), [0, 1, 2], _probes(labels), _plan(NOVEL))
    assert metrics["owner_accuracy"] > 0.9 and metrics["owner_shuffled_accuracy"] < 0.75
