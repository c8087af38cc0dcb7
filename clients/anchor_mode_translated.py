"""``translated`` (two phases): first each client sends its embeddings of the
public seeds and of its class-matched anchors; the server answers everyone with
the lowest answering partition's (the reference), and each client translates its
embeddings of the samples into the reference's space (``translation``, one of
``relatlas.registries.TRANSLATIONS``) and projects them on the reference's anchors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import Tensor

from relatlas.clients import protocol
from relatlas.clients.anchor_modes import ANCHOR_CLASSES, LocalView, QueryMessage, TwoPhaseAnchorMode
from relatlas.clients.protocol import ReplyError, float_array
from relatlas.registries import TRANSLATIONS

if TYPE_CHECKING:
    from relatlas.server.config import RunConfig
    from relatlas.server.replies import AnchoringReply, Expected


REFERENCE_PARTITION = "reference-partition"  # the query's task entry: whose space everyone translates into


class TranslatedAnchors(TwoPhaseAnchorMode):
    task_keys = (ANCHOR_CLASSES, REFERENCE_PARTITION)

    def first_reply_bytes(self, expected: Expected) -> int:
        return 4 * (expected.num_seeds + expected.num_anchors) * expected.embedding_dim

    def first_reply_arrays(self, record: ArrayRecord, expected: Expected) -> dict[str, np.ndarray]:
        seeds = float_array(record, protocol.SEEDS, protocol.ANCHORING)
        anchors = float_array(record, protocol.ANCHORS, protocol.ANCHORING)
        if seeds.ndim != 2 or seeds.shape[0] != expected.num_seeds or anchors.shape != (expected.num_anchors, seeds.shape[1]):
            raise ReplyError(
                f"seeds {seeds.shape}, anchors {anchors.shape}; expected ({expected.num_seeds}, d), ({expected.num_anchors}, d)"
            )
        return {protocol.SEEDS: seeds, protocol.ANCHORS: anchors}

    def pair(self, replies: Sequence[AnchoringReply], config: RunConfig) -> dict[int, QueryMessage]:
        """The reference client's seed and anchor embeddings, the same for everyone."""
        ordered = sorted(replies, key=lambda r: r.partition_id)
        reference = ordered[0]
        inputs = {
            protocol.REFERENCE_SEEDS: Array(reference.arrays[protocol.SEEDS].numpy()),
            protocol.REFERENCE_ANCHORS: Array(reference.arrays[protocol.ANCHORS].numpy()),
        }
        return {r.partition_id: ({REFERENCE_PARTITION: reference.partition_id}, inputs) for r in ordered}

    def first_phase(self, local: LocalView, inputs: ArrayRecord) -> dict[str, Tensor]:
        return {protocol.SEEDS: local.embed(inputs[protocol.ANCHORS].numpy()), protocol.ANCHORS: local.embed(local.own_anchors())}

    def projection(self, local: LocalView, inputs: ArrayRecord, samples: Tensor) -> tuple[Tensor, Tensor]:
        translated = samples
        if local.partition != int(local.task.anchoring[REFERENCE_PARTITION]):
            reference_seeds = torch.as_tensor(inputs[protocol.REFERENCE_SEEDS].numpy(), dtype=torch.float32)
            translate = TRANSLATIONS.get(local.task.anchors.translation)
            translated = translate(samples, local.embed(inputs[protocol.ANCHORS].numpy()), reference_seeds)
        return translated, torch.as_tensor(inputs[protocol.REFERENCE_ANCHORS].numpy(), dtype=torch.float32)


translated = TranslatedAnchors()
