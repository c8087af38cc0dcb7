"""``class-matched``: each client's own samples; anchor i is of the public class
``anchor-classes[i]`` on every client. Only the classes are sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flwr.app import ArrayRecord
from torch import Tensor

from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients.anchor_modes import (
    ANCHOR_CLASSES,
    AnchorMode,
    AnchorPlan,
    LocalView,
    anchor_classes,
    require_common_classes,
)

if TYPE_CHECKING:
    from relatlas.server.config import RunConfig


class ClassMatchedAnchors(AnchorMode):
    task_keys = (ANCHOR_CLASSES,)

    def check(self, config: RunConfig) -> None:
        require_common_classes(config)

    def plan(self, config: RunConfig, dataset: Dataset, federation_plan: FederationPlan) -> AnchorPlan:
        return AnchorPlan(None, anchor_classes(dataset.y_train[federation_plan.anchor_indices]))

    def projection(self, local: LocalView, inputs: ArrayRecord, samples: Tensor) -> tuple[Tensor, Tensor]:
        return samples, local.embed(local.own_anchors())


class_matched = ClassMatchedAnchors()
