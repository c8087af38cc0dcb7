"""``shared``: the server's public anchor samples, embedded by every client."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flwr.app import ArrayRecord
from torch import Tensor

from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import AnchorMode, AnchorPlan, LocalView

if TYPE_CHECKING:
    from relatlas.server.config import RunConfig


class SharedAnchors(AnchorMode):
    def plan(self, config: RunConfig, dataset: Dataset, federation_plan: FederationPlan) -> AnchorPlan:
        rows = federation_plan.anchor_indices
        return AnchorPlan(dataset.x_train[rows], (), rows)

    def projection(self, local: LocalView, inputs: ArrayRecord, samples: Tensor) -> tuple[Tensor, Tensor]:
        return samples, local.embed(inputs[protocol.ANCHORS].numpy())


shared = SharedAnchors()
