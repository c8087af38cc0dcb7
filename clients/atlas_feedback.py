"""A client's side of the atlas feedback: check the atlas the server sent (the
merged relative space of the public pool), pull the client towards it while it
trains, and project the pool for the next atlas.

The pull is ``atlas-weight`` x the run's atlas objective (``ATLAS_OBJECTIVES``) on
batches of pool samples drawn by a generator of its own, so the training batches
are those of a run without feedback. A message without an atlas (round 1, a
rejoining client) trains as such a run does; a bad atlas is refused before any step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict
from torch import Tensor

from relatlas.aggregation.aggregators import aggregate
from relatlas.aggregation.projection import relative_subspaces
from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.splits import plan_for
from relatlas.clients import protocol
from relatlas.clients.models import Classifier
from relatlas.clients.protocol import ReplyError, float_array
from relatlas.clients.task import Task
from relatlas.clients.training import derive_seed, predict
from relatlas.registries import ATLAS_OBJECTIVES

ATLAS_STREAM = 30_000  # seed stream of the pool batches, apart from training's


class AtlasError(ValueError):
    """An atlas this client refuses to train on, in one line."""


def public_pool(dataset: Dataset, task: Task) -> np.ndarray:
    """The public pool's raw inputs, in the plan's order (the atlas's rows): the server's and every client's plan agree."""
    return dataset.x_train[plan_for(dataset.y_train, task.data, task.anchors, task.runtime.seed).public_indices]


def own_rows(task: Task, embeddings: Tensor, anchor_embeddings: Tensor) -> Tensor:
    """This client's relative rows of ``embeddings``: the run's merge of this one client, as wide as the atlas."""
    return aggregate(task.merge.aggregation, [relative_subspaces(embeddings, anchor_embeddings, task.similarities)])


def received_atlas(content: RecordDict, rows: int, width: int) -> Tensor | None:
    """The atlas of the message, checked: float, finite, ``[rows, width]``; ``None`` if it holds none."""
    if protocol.ATLAS not in content:
        return None
    record = content[protocol.ATLAS]
    extra = sorted(set(record.keys()) - {protocol.ATLAS_ROWS})
    if extra:
        raise AtlasError(f"atlas holds arrays {extra[:5]} beyond {protocol.ATLAS_ROWS!r}")
    try:
        atlas = float_array(record, protocol.ATLAS_ROWS, protocol.ATLAS)
    except ReplyError as err:
        raise AtlasError(str(err)) from None
    if atlas.shape != (rows, width):
        raise AtlasError(f"atlas has shape {atlas.shape}; this client's public pool and merge make ({rows}, {width})")
    return torch.from_numpy(atlas.astype(np.float32))


@dataclass
class AtlasAlignment:
    """``weight`` x ``objective`` on the next batch of pool samples: ``fit``'s ``extra_loss``."""

    model: Classifier
    task: Task
    pool: Tensor  # raw inputs [P, ...]
    anchors: Tensor  # raw inputs [m, ...]
    atlas: Tensor  # [P, D]
    objective: Callable[..., Tensor]
    generator: torch.Generator
    _batches: list[Tensor] = field(default_factory=list)

    def __call__(self) -> Tensor:
        if not self._batches:  # whole batches only: a neighbourhood needs two samples or more
            size = self.task.model.batch_size
            order = torch.randperm(len(self.pool), generator=self.generator)
            self._batches = list(order[: len(order) // size * size].split(size))[::-1]
        batch = self._batches.pop()
        device = self.model.head.weight.device
        embeddings = self.model.embedder(self.pool[batch].to(device))
        rows = own_rows(self.task, embeddings, self.model.embedder(self.anchors.to(device)))
        loss = self.objective(rows, self.atlas[batch].to(device), embeddings=embeddings, logits=self.model.head(embeddings))
        return self.task.model.atlas_weight * loss


def atlas_alignment(
    content: RecordDict, inputs: ArrayRecord, task: Task, model: Classifier, dataset: Dataset, seed: int
) -> AtlasAlignment | None:
    """The pull towards the message's atlas, or ``None`` (no feedback in this run, or no atlas yet);
    ``inputs``: the message's, the public ones in place (``clients/public_inputs.py``)."""
    if not task.model.atlas_weight or protocol.ATLAS not in content:
        return None
    pool = torch.as_tensor(np.asarray(public_pool(dataset, task)), dtype=torch.float32)
    anchors = torch.as_tensor(inputs[protocol.ANCHORS].numpy().copy(), dtype=torch.float32)
    width = own_rows(task, predict(model.embedder, pool[:2]), predict(model.embedder, anchors)).shape[1]
    atlas = received_atlas(content, len(pool), width)
    generator = torch.Generator().manual_seed(derive_seed(seed, ATLAS_STREAM))
    return AtlasAlignment(model, task, pool, anchors, atlas, ATLAS_OBJECTIVES.get(task.model.atlas_objective), generator)


def public_relative(task: Task, embedder: torch.nn.Module, dataset: Dataset, anchor_embeddings: Tensor) -> ArrayRecord:
    """The reply's relative spaces of the public pool (float32, one per similarity), for the next atlas."""
    spaces = relative_subspaces(predict(embedder, public_pool(dataset, task)), anchor_embeddings, task.similarities)
    return ArrayRecord({name: Array(np.ascontiguousarray(space.numpy(), dtype=np.float32)) for name, space in spaces.items()})
