"""Anchor modes: where the anchors a client projects on come from, as one unit
per mode with a server half and a client half.

The built-ins (``shared``, ``class-matched``, ``bootstrapped``, ``translated``)
live in ``clients/anchor_mode_*.py`` and are registered by path in
``relatlas.registries.ANCHOR_MODES``. Nothing else tests a mode's name: the run
config asks ``mode.check(config)``, the server ``mode.plan`` and ``mode.pair``,
reply validation ``mode.first_reply_arrays``, the ClientApp ``mode.first_phase``
and ``mode.projection``.

A mode of one's own subclasses ``AnchorMode`` (one phase: the ``train`` reply
is the projection) or ``TwoPhaseAnchorMode`` (the ``train`` reply carries what
``pair`` needs, and a ``query`` message then asks for the projection), and is
registered from a plug-in module (``--plugins``)::

    from relatlas.registries import ANCHOR_MODES
    from relatlas.clients.anchor_modes import AnchorMode, AnchorPlan

    class FirstRows(AnchorMode):
        def plan(self, config, dataset, federation_plan):
            return AnchorPlan(dataset.x_train[: config.anchors], ())
        def projection(self, local, inputs, samples):
            return samples, local.embed(inputs["anchors"].numpy())

    ANCHOR_MODES.register("first-rows", FirstRows())

A mode that adds entries to the clients' task (``AnchorPlan.task``, the first
item of each ``pair`` value) lists their keys in ``task_keys``; the client finds
them in ``local.task.anchoring`` and refuses keys no mode declared.

Modes live in the client layer, since the ClientApp runs their client half; the
server imports them downward, and they refer to server types in hints only.

Seeds are K of the run's public anchors (a seeded choice); the class of anchor i
(``anchor-classes``) is the class of public anchor i, so every mode draws its
anchors with the same class composition.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from flwr.app import Array, ArrayRecord
from torch import Tensor, nn

from relatlas.aggregation.anchors import class_matched_anchors, select_anchors
from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.sources import wire_array
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients import protocol
from relatlas.clients.anchoring import anchor_seed
from relatlas.clients.task import Task
from relatlas.clients.training import predict

if TYPE_CHECKING:
    from relatlas.server.config import RunConfig
    from relatlas.server.replies import AnchoringReply, Expected

ANCHOR_CLASSES = "anchor-classes"  # the task entry: the class of anchor i, for modes where clients draw their own
QueryMessage = tuple[dict[str, Any], dict[str, Array]]  # a partition's extra task entries and inputs of its query


@dataclass(frozen=True)
class AnchorPlan:
    """What the server tells clients about anchors; fixed over a run."""

    sent: Sequence[Any] | None  # raw inputs sent as ``anchors``: public anchors, seeds, or none
    classes: tuple[int, ...]  # anchor-classes, for modes where clients draw their own
    rows: np.ndarray | None = None  # the training-set rows ``sent`` is, if any: clients holding the dataset read them there

    def task(self) -> dict[str, Any]:
        """Task entries the clients need beyond the run config."""
        return {ANCHOR_CLASSES: list(self.classes)} if self.classes else {}

    def inputs(self) -> dict[str, Array]:
        return {} if self.sent is None else {protocol.ANCHORS: Array(wire_array(self.sent))}


@dataclass(frozen=True)
class LocalView:
    """What a client's half of a mode sees: its data, task and trained embedder."""

    dataset: Dataset
    rows: np.ndarray  # the client's rows of the training set
    task: Task
    embedder: nn.Module

    @property
    def partition(self) -> int:
        return self.task.partition_id

    def embed(self, inputs: np.ndarray) -> Tensor:
        return predict(self.embedder, inputs)

    def own_anchors(self) -> np.ndarray:
        """Raw inputs of this client's class-matched anchors (the same every round)."""
        seed = anchor_seed(self.task.runtime.seed, self.partition)
        rows = class_matched_anchors(self.dataset.y_train[self.rows], self.anchor_classes(), seed=seed)
        return self.dataset.x_train[self.rows[rows]]

    def anchor_classes(self) -> list[int]:
        """The class of each anchor this client draws itself (the plan's ``anchor-classes``)."""
        return [int(c) for c in self.task.anchoring[ANCHOR_CLASSES]]


class AnchorMode(ABC):
    """One anchor mode; the base is one-phase (the ``train`` reply is the projection)."""

    two_phase: ClassVar[bool] = False
    task_keys: ClassVar[tuple[str, ...]] = ()  # the entries this mode adds to a task (plan and pair)

    # -- server half --
    def check(self, config: RunConfig) -> None:  # noqa: B027 - a hook: most modes run with any config
        """Raise ``ValueError`` (one line) if ``config`` cannot run this mode."""

    @abstractmethod
    def plan(self, config: RunConfig, dataset: Dataset, federation_plan: FederationPlan) -> AnchorPlan:
        """The raw anchors (or seeds) the ``train`` message carries and the task entries."""

    def train_inputs(self, sent: dict[str, Array]) -> dict[str, Array]:
        """The inputs of the ``train`` message, from everything the round sends."""
        return sent

    # -- client half --
    def first_phase(self, local: LocalView, inputs: ArrayRecord) -> dict[str, Tensor] | None:
        """What a client sends to be paired (``anchoring``); ``None``: it projects at once."""
        return None

    @abstractmethod
    def projection(self, local: LocalView, inputs: ArrayRecord, samples: Tensor) -> tuple[Tensor, Tensor]:
        """The client's embedded ``samples`` as it projects them, and the anchors' embeddings."""


class TwoPhaseAnchorMode(AnchorMode):
    """A mode whose ``train`` reply is paired across clients before a ``query`` asks for the projection."""

    two_phase: ClassVar[bool] = True
    task_keys: ClassVar[tuple[str, ...]] = (ANCHOR_CLASSES,)

    def check(self, config: RunConfig) -> None:
        require_common_classes(config)
        if config.seed_anchors > config.anchors:
            raise ValueError(f"seed-anchors ({config.seed_anchors}) cannot exceed anchors ({config.anchors}): seeds are anchors")

    def plan(self, config: RunConfig, dataset: Dataset, federation_plan: FederationPlan) -> AnchorPlan:
        """The K public seeds, and the public anchors' classes."""
        labels = dataset.y_train[federation_plan.anchor_indices]
        seeds = select_anchors(labels, config.seed_anchors, sampling=config.anchor_sampling, seed=config.seed)
        rows = np.asarray(federation_plan.anchor_indices)[seeds]
        return AnchorPlan(dataset.x_train[rows], anchor_classes(labels), rows)

    def train_inputs(self, sent: dict[str, Array]) -> dict[str, Array]:
        """The samples come with the query."""
        return {name: array for name, array in sent.items() if name != protocol.SAMPLES}

    @abstractmethod
    def first_reply_bytes(self, expected: Expected) -> int:
        """The most array bytes (float32) a valid first-phase reply holds."""

    @abstractmethod
    def first_reply_arrays(self, record: ArrayRecord, expected: Expected) -> dict[str, np.ndarray]:
        """The checked arrays of a first-phase reply's ``anchoring`` record; raise ``ReplyError`` if invalid."""

    @abstractmethod
    def pair(self, replies: Sequence[AnchoringReply], config: RunConfig) -> dict[int, QueryMessage]:
        """Per answering partition, the extra task entries and inputs of its ``query`` message;
        raise ``ValueError`` if the clients cannot be paired."""


def anchor_classes(labels: np.ndarray) -> tuple[int, ...]:
    """``anchor-classes``: the class of each public anchor."""
    return tuple(int(c) for c in labels)


def require_common_classes(config: RunConfig) -> None:
    """Modes that draw each client's anchors by class need classes every client holds."""
    if config.split == "disjoint-classes":
        raise ValueError(
            f"anchors-mode {config.anchors_mode} pairs anchors by classes all clients hold; the disjoint-classes split has none"
        )
