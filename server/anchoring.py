"""The server's side of the anchor modes (``clients/anchoring.py``): which raw
anchors a round's ``train`` message carries, and, for two-phase modes, how the
clients' first replies are paired before the ``query`` message.

Seeds are K of the run's public anchors (a seeded choice); the class of anchor i
(``anchor-classes``) is the class of public anchor i, so every mode draws its
anchors with the same class composition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.app import Array
from relatlas.aggregation.anchors import select_anchors
from relatlas.aggregation.bootstrap import bootstrap_anchors
from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients import protocol
from relatlas.server.config import RunConfig
from relatlas.server.replies import AnchoringReply


@dataclass(frozen=True)
class AnchorPlan:
    """What the server tells clients about anchors; fixed over a run."""

    mode: str
    sent: np.ndarray | None  # raw inputs sent as ``anchors``: public anchors, seeds, or none
    classes: tuple[int, ...]  # anchor-classes, for modes where clients draw their own

    @classmethod
    def build(cls, config: RunConfig, dataset: Dataset, plan: FederationPlan) -> AnchorPlan:
        public = dataset.x_train[plan.anchor_indices]
        if config.anchors_mode == "shared":
            return cls("shared", public, ())
        classes = tuple(int(c) for c in dataset.y_train[plan.anchor_indices])
        if config.anchors_mode == "class-matched":
            return cls("class-matched", None, classes)
        labels = dataset.y_train[plan.anchor_indices]
        seeds = select_anchors(labels, config.seed_anchors, sampling=config.anchor_sampling, seed=config.seed)
        return cls(config.anchors_mode, public[seeds], classes)

    def task(self) -> dict[str, Any]:
        """Task entries the clients need beyond the run config."""
        return {"anchor-classes": list(self.classes)} if self.classes else {}

    def inputs(self) -> dict[str, Array]:
        return {} if self.sent is None else {protocol.ANCHORS: Array(np.ascontiguousarray(self.sent))}


def pair_anchors(
    mode: str, replies: Sequence[AnchoringReply], num_seeds: int, num_anchors: int
) -> dict[int, tuple[dict[str, Any], dict[str, Array]]]:
    """Per partition, the task entries and inputs of its ``query`` message.

    ``bootstrapped``: the pool rows that are its anchors, grown from the seeds
    (the first ``num_seeds`` rows of every pool) by matching every client to the
    lowest answering partition. ``translated``: that reference client's seed and
    anchor embeddings, the same for everyone.
    """
    ordered = sorted(replies, key=lambda r: r.partition_id)
    if mode == "bootstrapped":
        grams = [r.arrays[protocol.GRAM] for r in ordered]
        rows = bootstrap_anchors(grams, [np.arange(num_seeds)] * len(grams), target=num_anchors)
        return {r.partition_id: ({"anchor-indices": [int(i) for i in row]}, {}) for r, row in zip(ordered, rows)}
    reference = ordered[0]
    inputs = {
        protocol.REFERENCE_SEEDS: Array(reference.arrays[protocol.SEEDS].numpy()),
        protocol.REFERENCE_ANCHORS: Array(reference.arrays[protocol.ANCHORS].numpy()),
    }
    return {r.partition_id: ({"reference-partition": reference.partition_id}, inputs) for r in ordered}
