"""Named aggregation methods: which similarities clients must send, and how
the server turns the clients' subspaces into one merged space.

A client's space is a mapping ``similarity -> [N, m]`` tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from torch import Tensor

from aggregation.merge import concat_merge, mean_merge, product_merge
from aggregation.projection import SIMILARITIES, Similarity

Aggregation = Literal["mean", "product", "concat"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "product", "concat")

ClientSpace = Mapping[str, Tensor]


def required_similarities(aggregation: Aggregation) -> tuple[Similarity, ...]:
    """The relative subspaces a client sends for ``aggregation``."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    return SIMILARITIES if aggregation == "product" else ("cosine",)


def aggregate(
    aggregation: Aggregation,
    spaces: Sequence[ClientSpace],
    *,
    weights: Sequence[float] | None = None,
    masks: Tensor | None = None,
) -> Tensor:
    """Merge the clients' spaces with the named method.

    ``mean``: weighted masked mean of the cosine spaces. ``product``: the same mean
    per similarity, then the product of invariances (row-standardised subspaces,
    concatenated). ``concat``: the cosine spaces side by side (baseline; weights
    and masks do not apply).
    """
    names = required_similarities(aggregation)
    missing = [name for space in spaces for name in names if name not in space]
    if missing:
        raise ValueError(f"{aggregation} aggregation needs subspaces {names}, missing {sorted(set(missing))}")
    if aggregation == "concat":
        return concat_merge([space["cosine"] for space in spaces])
    merged = [mean_merge([space[name] for space in spaces], weights=weights, masks=masks) for name in names]
    return merged[0] if aggregation == "mean" else product_merge(merged)
