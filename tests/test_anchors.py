import numpy as np
import pytest

from relatlas.aggregation.anchors import class_matched_anchors, select_anchors

LABELS = np.repeat(np.arange(5), [40, 30, 20, 10, 5])


@pytest.mark.parametrize("sampling", ["uniform", "stratified"])
def test_distinct_seeded_and_reproducible(sampling):
    first = select_anchors(LABELS, 25, sampling=sampling, seed=3)
    assert len(set(first)) == 25
    np.testing.assert_array_equal(first, select_anchors(LABELS, 25, sampling=sampling, seed=3))
    assert not np.array_equal(first, select_anchors(LABELS, 25, sampling=sampling, seed=4))


def test_stratified_balances_classes_round_robin():
    counts = np.bincount(LABELS[select_anchors(LABELS, 23, sampling="stratified", seed=0)], minlength=5)
    # round-robin: 5 per class until class 4 (5 samples) is exhausted, the rest spread over the others
    assert counts.max() - counts.min() <= 1 or counts[4] == 5
    assert counts.sum() == 23 and (counts >= 4).all()


def test_restricted_to_classes():
    chosen = select_anchors(LABELS, 15, classes=[1, 3], seed=0)
    assert set(LABELS[chosen]) <= {1, 3}


def test_errors_are_clear():
    with pytest.raises(ValueError, match="only 15 samples of classes"):
        select_anchors(LABELS, 16, classes=[3, 4])
    with pytest.raises(ValueError, match="at least 1"):
        select_anchors(LABELS, 0)
    with pytest.raises(ValueError, match="unknown anchor sampling"):
        select_anchors(LABELS, 3, sampling="greedy")


def test_class_matched_anchor_i_has_class_i_on_every_client():
    classes = [2, 0, 2, 4, 0, 2]
    other_client = np.random.default_rng(9).permutation(LABELS)
    for labels, seed in ((LABELS, 0), (other_client, 1)):
        chosen = class_matched_anchors(labels, classes, seed=seed)
        assert list(labels[chosen]) == classes and len(set(chosen)) == len(classes)
    np.testing.assert_array_equal(class_matched_anchors(LABELS, classes, seed=5), class_matched_anchors(LABELS, classes, seed=5))


def test_class_matched_anchors_need_enough_local_samples():
    with pytest.raises(ValueError, match="need 6 samples of class 4; only 5 are here"):
        class_matched_anchors(LABELS, [4] * 6)
