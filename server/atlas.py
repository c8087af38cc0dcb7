"""The atlas the server sends back: the run's merge of the clients' relative rows of
the public pool, made after each round and sent with the next round's ``train``
message (``clients/protocol.py``), so a client can learn from the federation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import Tensor

from relatlas.aggregation.aggregators import ClientSpace, aggregate, required_similarities
from relatlas.aggregation.projection import relative_subspaces
from relatlas.clients import protocol
from relatlas.section_base import ConfigError


def check_one_client_width(aggregation: str, anchors: int, clients: int) -> None:
    """The merge of one client is as wide as the merge of ``clients``: a client compares
    its own rows with the atlas's column by column (``concat``'s grows with the clients)."""
    generator = torch.Generator().manual_seed(0)
    space = relative_subspaces(
        torch.randn(4, 8, generator=generator), torch.randn(anchors, 8, generator=generator), required_similarities(aggregation)
    )
    alone, merged = aggregate(aggregation, [space]).shape[1], aggregate(aggregation, [space] * clients).shape[1]
    if alone != merged:
        raise ValueError(
            f"atlas-weight > 0 needs an aggregation whose merge of one client is as wide as the atlas; "
            f"{aggregation} gives {alone} columns for one client, {merged} for {clients}"
        )


def check_pool_disjoint(pool: np.ndarray, samples: np.ndarray) -> None:
    """No public-pool row equals an evaluation sample: the atlas must not teach the clients what is scored."""
    if not len(pool) or not len(samples):
        return
    scored = {row.tobytes(): i for i, row in enumerate(np.asarray(samples).reshape(len(samples), -1))}
    for i, row in enumerate(np.asarray(pool).reshape(len(pool), -1)):
        if row.tobytes() in scored:
            raise ConfigError(
                f"the public pool overlaps the evaluation samples: pool row {i} equals evaluation sample {scored[row.tobytes()]}"
            )


def atlas_record(atlas: Tensor) -> ArrayRecord:
    """The atlas as the ``train`` message carries it: one float32 [P, D] array."""
    return ArrayRecord({protocol.ATLAS_ROWS: Array(np.ascontiguousarray(atlas.numpy(), dtype=np.float32))})


@dataclass(frozen=True)
class Atlas:
    """What the next round's ``train`` messages carry: the merge of every valid reply's
    pool rows, or, for a partition that replied and ``atlas-leave-one-out``, the merge of
    the others' (what the federation knows beyond that client)."""

    merged: ArrayRecord
    left_out: Mapping[int, ArrayRecord] = field(default_factory=dict)  # partition -> the others' merge

    def for_partition(self, partition: int) -> ArrayRecord:
        return self.left_out.get(partition, self.merged)


def make_atlas(
    aggregation: str, pools: Sequence[ClientSpace], partitions: Sequence[int], weights: Sequence[int] | None,
    hostile: int | None, leave_one_out: bool,
) -> Atlas:  # fmt: skip
    """The atlas of one round's valid replies (``pools``, from ``partitions``, merged with ``weights``)."""
    merged = atlas_record(aggregate(aggregation, pools, weights=weights, hostile=hostile))
    if not leave_one_out or len(pools) < 2:
        return Atlas(merged)
    left_out = {}
    for i, partition in enumerate(partitions):
        others = [j for j in range(len(pools)) if j != i]
        kept = None if weights is None else [weights[j] for j in others]
        left_out[partition] = atlas_record(aggregate(aggregation, [pools[j] for j in others], weights=kept, hostile=hostile))
    return Atlas(merged, left_out)
