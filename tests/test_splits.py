import numpy as np
import pytest

from relatlas.benchmarks.splits import SplitError, class_plan, plan_federation

LABELS = np.repeat(np.arange(10), 50)


def _classes(plan, k):
    return set(LABELS[plan.client_indices[k]])


def test_shared_classes_split():
    plan = plan_federation(LABELS, "shared-classes", 3, num_anchors=20, shared=4, novel=2, seed=0)
    shared = set(plan.shared_classes)
    assert len(shared) == 4
    novel = [_classes(plan, k) - shared for k in range(3)]
    assert all(len(n) == 2 for n in novel) and not (novel[0] & novel[1] or novel[0] & novel[2] or novel[1] & novel[2])
    assert set(LABELS[plan.anchor_indices]) <= shared
    for k in range(3):
        assert _classes(plan, k) >= shared
        assert not set(plan.client_indices[k]) & set(plan.anchor_indices)
        # every shared-class sample except anchors goes to every client
        assert np.isin(LABELS[plan.client_indices[k]], list(shared)).sum() == 4 * 50 - 20
    novel_class = next(iter(novel[1]))
    assert [k for k, classes in enumerate(plan.client_classes) if novel_class in classes] == [1]


def test_default_novel_groups_use_the_remaining_classes():
    _, per_client = class_plan(10, "shared-classes", 3, shared=1, novel=None, seed=0)
    assert all(len(c) == 4 for c in per_client)


@pytest.mark.parametrize("split", ["same-classes", "dirichlet"])
def test_sample_splits_are_disjoint_and_cover_the_pool(split):
    plan = plan_federation(LABELS, split, 4, num_anchors=30, alpha=1.0, seed=1)
    union = np.concatenate(plan.client_indices)
    assert len(union) == len(set(union)) == len(LABELS) - 30
    assert not set(union) & set(plan.anchor_indices)


def test_same_classes_gives_every_client_every_class_imbalanced():
    plan = plan_federation(LABELS, "same-classes", 3, num_anchors=10, seed=2)
    counts = np.array([np.bincount(LABELS[idx], minlength=10) for idx in plan.client_indices])
    assert (counts >= 50 * 0.5 / 3 - 2).all()
    assert counts.std(axis=0).max() > 1  # not an even deal


def test_disjoint_classes():
    plan = plan_federation(LABELS, "disjoint-classes", 3, num_anchors=10, seed=0)
    sets = [_classes(plan, k) for k in range(3)]
    assert sum(map(len, sets)) == 10 and not (sets[0] & sets[1] or sets[1] & sets[2])


def test_seeded_plans_are_reproducible():
    first = plan_federation(LABELS, "dirichlet", 3, num_anchors=10, seed=7)
    second = plan_federation(LABELS, "dirichlet", 3, num_anchors=10, seed=7)
    for a, b in zip(first.client_indices, second.client_indices):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "shared-classes", "num_clients": 3, "shared": 10}, "must be in"),
        ({"split": "shared-classes", "num_clients": 7, "shared": 4}, "need"),
        ({"split": "disjoint-classes", "num_clients": 11}, "cannot hold disjoint classes"),
        ({"split": "shared-classes", "num_clients": 3, "shared": 0}, "S >= 1"),
        ({"split": "diagonal", "num_clients": 3}, "unknown split"),
    ],
)
def test_impossible_splits_fail_clearly(kwargs, message):
    with pytest.raises(SplitError, match=message):
        plan_federation(LABELS, num_anchors=5, **kwargs)


def test_iid_deals_every_client_a_row_where_a_class_by_class_deal_leaves_some_none():
    labels = np.random.default_rng(0).integers(0, 10, 60_000)  # Fashion-MNIST's size: 6 rows a client at 10,000
    with pytest.raises(SplitError, match="received no training samples"):
        plan_federation(labels, "same-classes", 10_000, num_anchors=64, seed=0)
    plan = plan_federation(labels, "iid", 10_000, num_anchors=64, seed=0)
    sizes = {len(idx) for idx in plan.client_indices}
    assert sizes == {5, 6}
    union = np.concatenate(plan.client_indices)
    assert len(union) == len(set(union)) == 60_000 - 64 and not set(union) & set(plan.anchor_indices)


def test_iid_refuses_more_clients_than_rows():
    with pytest.raises(SplitError, match="need a training row each"):
        plan_federation(LABELS, "iid", 491, num_anchors=10, seed=0)
