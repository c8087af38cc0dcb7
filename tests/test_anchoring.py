"""Anchor modes: what the server sends, how it pairs first replies, the
client's translation step, and that a user's mode plugs in."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relatlas.aggregation.bootstrap import cosine_gram
from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.splits import plan_for
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import AnchorMode, AnchorPlan
from relatlas.clients.anchoring import bootstrap_candidates
from relatlas.registries import ANCHOR_MODES, TRANSLATIONS
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.replies import AnchoringReply
from tests.conftest import random_orthogonal


def _anchor_plan(**overrides) -> tuple[AnchorPlan, np.ndarray]:
    config = RunConfig(**overrides)
    dataset = load_dataset("digits")
    plan = plan_for(dataset.y_train, config, config, config.seed)
    return ANCHOR_MODES.get(config.anchors_mode).plan(config, dataset, plan), dataset.y_train[plan.anchor_indices]


def test_anchor_plans_send_public_anchors_seeds_or_only_classes():
    shared, labels = _anchor_plan()
    assert shared.sent.shape[0] == 64 and shared.task() == {}
    matched, _ = _anchor_plan(anchors_mode="class-matched")
    assert matched.sent is None and matched.task()["anchor-classes"] == labels.tolist()
    seeded, _ = _anchor_plan(anchors_mode="bootstrapped", seed_anchors=8)
    assert seeded.sent.shape[0] == 8 and len(seeded.task()["anchor-classes"]) == 64
    assert seeded.sent.tolist() == _anchor_plan(anchors_mode="bootstrapped", seed_anchors=8)[0].sent.tolist()


def test_bootstrap_candidates_come_from_the_anchor_classes():
    labels = np.repeat(np.arange(4), 50)
    rows = bootstrap_candidates(labels, 10, [1, 3, 3], seed=0)
    assert len(rows) == 40 and set(labels[rows]) <= {1, 3}
    assert len(bootstrap_candidates(labels, 30, [1], seed=0)) == 50  # all there are


def test_pairing_bootstrapped_pools_matches_each_client_to_the_reference(clustered):
    points = clustered[0][torch.randperm(300, generator=torch.Generator().manual_seed(0))]
    hidden = np.concatenate([np.arange(6), 6 + np.random.default_rng(0).permutation(294)])  # seeds stay first
    copy = torch.empty_like(points)
    copy[torch.as_tensor(hidden)] = 2.0 * points @ random_orthogonal(16, seed=1).float()
    replies = [AnchoringReply(100 + p, p, {protocol.GRAM: cosine_gram(space)}, 0) for p, space in enumerate((points, copy))]
    paired = ANCHOR_MODES.get("bootstrapped").pair(replies, RunConfig(anchors_mode="bootstrapped", seed_anchors=6, anchors=30))
    rows_0, rows_1 = (np.asarray(paired[p][0]["anchor-indices"]) for p in (0, 1))
    assert len(rows_0) == 30 and list(rows_0[:6]) == list(range(6))
    assert np.mean(hidden[rows_0] == rows_1) > 0.9


def test_pairing_for_translation_sends_the_lowest_partitions_embeddings():
    arrays = {p: {protocol.SEEDS: torch.full((4, 3), float(p)), protocol.ANCHORS: torch.full((10, 3), float(p))} for p in (1, 2)}
    replies = [AnchoringReply(100 + p, p, arrays[p], 0) for p in (2, 1)]  # partition 0 did not answer
    paired = ANCHOR_MODES.get("translated").pair(replies, RunConfig(anchors_mode="translated", seed_anchors=4, anchors=10))
    assert set(paired) == {1, 2}
    task, inputs = paired[2]
    assert task == {"reference-partition": 1} and (inputs[protocol.REFERENCE_ANCHORS].numpy() == 1.0).all()


@pytest.mark.parametrize("method", ["procrustes", "inversion"])
def test_translation_moves_samples_into_the_reference_space(method):
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(200, 8, generator=gen)
    own = 3.0 * reference @ random_orthogonal(8, seed=2).float()
    moved = TRANSLATIONS.get(method)(own[40:], own[:40], reference[:40])
    assert F.cosine_similarity(moved, reference[40:]).mean() > 0.95


class _FirstRows(AnchorMode):
    """A user's one-phase mode: the first training rows as shared anchors, at most 32 of them."""

    def check(self, config: RunConfig) -> None:
        if config.anchors > 32:
            raise ValueError("first-rows takes at most 32 anchors")

    def plan(self, config, dataset, federation_plan) -> AnchorPlan:
        return AnchorPlan(dataset.x_train[: config.anchors], ())

    def projection(self, local, inputs, samples):
        return samples, local.embed(inputs[protocol.ANCHORS].numpy())


def test_a_users_anchor_mode_registers_and_the_config_asks_it():
    ANCHOR_MODES.register("first-rows", _FirstRows(), replace=True)
    try:
        assert RunConfig(anchors_mode="first-rows", anchors=16).anchors_mode == "first-rows"
        with pytest.raises(ConfigError, match="first-rows takes at most 32 anchors"):
            RunConfig(anchors_mode="first-rows", anchors=64)
        plan, _ = _anchor_plan(anchors_mode="first-rows", anchors=16)
        assert isinstance(plan, AnchorPlan) and plan.sent.shape[0] == 16
    finally:
        ANCHOR_MODES._entries.pop("first-rows")


def test_the_client_half_of_every_mode_imports_no_server_only_package():
    code = (
        "import sys; from relatlas.registries import ANCHOR_MODES; import relatlas.clients.client_app; "
        "[ANCHOR_MODES.get(n) for n in ANCHOR_MODES]; print(sorted({'mlflow', 'ray'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
