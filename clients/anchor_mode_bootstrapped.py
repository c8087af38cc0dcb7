"""``bootstrapped`` (two phases): first each client sends the cosine Gram matrix
of its pool, the ``K`` public seeds followed by its own candidates; the server
matches the clients' pools and answers with the pool rows that are the anchors,
grown from the seeds by matching every client to the lowest answering partition."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from flwr.app import ArrayRecord
from torch import Tensor

from relatlas.aggregation.bootstrap import bootstrap_anchors, cosine_gram
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import ANCHOR_CLASSES, LocalView, QueryMessage, TwoPhaseAnchorMode
from relatlas.clients.anchoring import CANDIDATES_PER_ANCHOR, anchor_seed, bootstrap_candidates
from relatlas.clients.protocol import ReplyError, float_array
from relatlas.registries import SIMILARITIES

if TYPE_CHECKING:
    from relatlas.server.config import RunConfig
    from relatlas.server.replies import AnchoringReply, Expected


ANCHOR_INDICES = "anchor-indices"  # the query's task entry: the pool rows that are this client's anchors


class BootstrappedAnchors(TwoPhaseAnchorMode):
    task_keys = (ANCHOR_CLASSES, ANCHOR_INDICES)

    def check(self, config: RunConfig) -> None:
        if config.min_clients < 2:
            raise ValueError("anchors-mode bootstrapped matches clients to each other: set min-clients >= 2")
        super().check(config)

    def first_reply_bytes(self, expected: Expected) -> int:
        return 4 * _largest_pool(expected) ** 2

    def first_reply_arrays(self, record: ArrayRecord, expected: Expected) -> dict[str, np.ndarray]:
        gram = float_array(record, protocol.GRAM, protocol.ANCHORING, SIMILARITIES.get("cosine").value_range)
        largest = _largest_pool(expected)
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or not expected.num_anchors <= len(gram) <= largest:
            raise ReplyError(f"gram has shape {gram.shape}; expected a square pool of {expected.num_anchors} to {largest} rows")
        return {protocol.GRAM: gram}

    def pair(self, replies: Sequence[AnchoringReply], config: RunConfig) -> dict[int, QueryMessage]:
        """The pool rows that are each partition's anchors (the seeds are every pool's first rows)."""
        ordered = sorted(replies, key=lambda r: r.partition_id)
        grams = [r.arrays[protocol.GRAM] for r in ordered]
        rows = bootstrap_anchors(grams, [np.arange(config.seed_anchors)] * len(grams), target=config.anchors)
        return {r.partition_id: ({ANCHOR_INDICES: [int(i) for i in row]}, {}) for r, row in zip(ordered, rows)}

    def first_phase(self, local: LocalView, inputs: ArrayRecord) -> dict[str, Tensor]:
        return {protocol.GRAM: cosine_gram(local.embed(_pool(local, inputs)))}

    def projection(self, local: LocalView, inputs: ArrayRecord, samples: Tensor) -> tuple[Tensor, Tensor]:
        pool = _pool(local, inputs)
        rows = np.asarray(local.task.anchoring[ANCHOR_INDICES], dtype=np.int64)
        if rows.min() < 0 or rows.max() >= len(pool):
            raise ValueError(f"anchor-indices must be rows of this client's pool of {len(pool)}")
        return samples, local.embed(pool[rows])


def _largest_pool(expected: Expected) -> int:
    return expected.num_seeds + CANDIDATES_PER_ANCHOR * expected.num_anchors


def _pool(local: LocalView, inputs: ArrayRecord) -> np.ndarray:
    """Raw inputs of the bootstrapping pool: the public seeds, then local candidates."""
    labels = local.dataset.y_train[local.rows]
    seed = anchor_seed(local.task.runtime.seed, local.partition)
    rows = bootstrap_candidates(labels, local.task.anchors.anchors, local.anchor_classes(), seed)
    return np.concatenate([inputs[protocol.ANCHORS].numpy(), local.dataset.x_train[local.rows[rows]]])


bootstrapped = BootstrappedAnchors()
