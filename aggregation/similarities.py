"""Similarities: how a sample is compared with the anchors, one per registry entry.

A ``Similarity`` prepares the anchors once, computes one block of rows against
them, and states the values it can take (what a client's projection must lie
in). Invariances of the built-ins (all also invariant to translation once centred):

- ``cosine``: orthogonal maps, positive rescaling;
- ``euclidean``: orthogonal maps, translation;
- ``l1``, ``linf``: coordinate permutations and sign flips, translation.

A user's similarity registers the same way::

    SIMILARITIES.register("mine", Similarity(prepare, compute, (0.0, math.inf)))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Similarity:
    """``compute(rows [n, d], prepare(anchors) [m, d]) -> [n, m]``, each value within ``value_range``.

    ``rows`` is a block of the samples (batch dimension first), ``prepare``'s output
    whatever ``compute`` takes as the anchors. A ``compute`` output of any other shape
    is refused in one line naming the similarity (before a run starts, and by each
    client); the server refuses a reply with a value outside ``value_range`` (or not finite).
    ``output_only``: ``compute`` allocates nothing but its output, so one call over all rows
    is as bounded as blocks of them and ``relative_projection`` makes none: each block is a
    parallel region of its own, and under CPU contention each waits for its slowest thread.
    """

    prepare: Callable[[Tensor], Tensor]
    compute: Callable[[Tensor, Tensor], Tensor]
    value_range: tuple[float, float]
    output_only: bool = False


def _unchanged(anchors: Tensor) -> Tensor:
    return anchors


def _unit_rows(anchors: Tensor) -> Tensor:
    return F.normalize(anchors, dim=-1)


def _cosine(x: Tensor, anchors_unit: Tensor) -> Tensor:
    return F.normalize(x, dim=-1) @ anchors_unit.T


def _minkowski(p: float) -> Callable[[Tensor, Tensor], Tensor]:
    def distance(x: Tensor, anchors: Tensor) -> Tensor:
        return torch.cdist(x, anchors, p=p)

    return distance


DISTANCE_RANGE = (0.0, math.inf)

cosine = Similarity(_unit_rows, _cosine, (-1.0, 1.0))
euclidean = Similarity(_unchanged, _minkowski(2.0), DISTANCE_RANGE)
# torch.cdist for p = 1 and infinity writes its output and nothing else (bench perf: its peak
# is its output's bytes); for p = 2 it takes the matrix-product path, with intermediates
l1 = Similarity(_unchanged, _minkowski(1.0), DISTANCE_RANGE, output_only=True)
linf = Similarity(_unchanged, _minkowski(float("inf")), DISTANCE_RANGE, output_only=True)
