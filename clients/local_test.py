"""A client's own test split: the heterogeneous-FL score "average client test accuracy".

Each client holds back a seeded stratified part of its training rows
(``local-test-fraction``), never trains on it, and scores its own classifier on it
after every round; the server averages the clients' scores. The split depends
on the run's seed and the partition only, so it is the same in every round, on
either engine, and a resumed run holds back the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from relatlas.benchmarks.datasets import stratified_split
from relatlas.clients.training import Inputs, derive_seed, predict

LOCAL_TEST_STREAM = 30_000  # seed stream of the held-back split, apart from training's and the payload noise's


def held_back_split(
    rows: np.ndarray, labels: np.ndarray, fraction: float, seed: int, partition: int
) -> tuple[np.ndarray, np.ndarray]:
    """(rows to train on, rows held back): ``fraction`` of each class of ``rows``
    (``labels`` are theirs), drawn with the run's ``seed`` for this ``partition``.
    A fraction of 0 holds back nothing, so a run without it trains on what it always did."""
    if fraction == 0:
        return rows, rows[:0]
    train, test = stratified_split(labels, fraction, derive_seed(seed, partition, LOCAL_TEST_STREAM))
    if not len(test) or not len(train):
        raise ValueError(
            f"local-test-fraction {fraction:g} of partition {partition}'s {len(rows)} training rows leaves "
            f"{len(train)} to train on and {len(test)} to test on; both need at least one"
        )
    return rows[train], rows[test]


def local_test_accuracy(model: nn.Module, x: Inputs, y: np.ndarray) -> float:
    """The share of held-back rows ``x`` whose label ``y`` the client's own classifier predicts."""
    return float((predict(model, x).argmax(dim=1).numpy() == np.asarray(y)).mean())


def training_rows(client_rows: Sequence[np.ndarray], labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Each partition's rows (``client_rows``, rows of ``labels``) less those it holds back:
    what the clients train on, and so what the centralised reference may train on."""
    return tuple(held_back_split(rows, labels[rows], fraction, seed, p)[0] for p, rows in enumerate(client_rows))
