"""Named aggregation methods, registered by ``register_aggregation``: which
similarities clients must send, and how the server turns the clients' subspaces
into one merged space. A user's merge registers the way the built-ins below do.

A client's space is a mapping ``similarity -> [N, m]`` tensor.

The robust merges (``median``, ``trimmed-mean``) are unweighted: a client's own
sample count is exactly what a hostile client would inflate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from relatlas.aggregation.merge import concat_merge, mean_merge, median_merge, product_merge, trimmed_mean_merge
from relatlas.aggregation.projection import SIMILARITIES
from torch import Tensor

from relatlas.registries import AGGREGATIONS as REGISTERED_NAMES

ClientSpace = Mapping[str, Tensor]
# (the clients' spaces, their weights or None, their sample masks [K, N] or None) -> the merged space
MergeFn = Callable[[Sequence[ClientSpace], Sequence[float] | None, Tensor | None], Tensor]


@dataclass(frozen=True)
class Aggregation:
    """A merge and the relative subspaces it needs from every client."""

    similarities: tuple[str, ...]
    merge: MergeFn


AGGREGATIONS: dict[str, Aggregation] = {}


def register_aggregation(name: str, similarities: tuple[str, ...] = ("cosine",)) -> Callable[[MergeFn], MergeFn]:
    """Register ``merge`` under ``name``; clients then send ``similarities``."""

    def decorate(merge: MergeFn) -> MergeFn:
        AGGREGATIONS[name] = REGISTERED_NAMES.register(name, Aggregation(similarities, merge), replace=True)
        return merge

    return decorate


def _method(name: str) -> Aggregation:
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; choose from {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[name]


def required_similarities(aggregation: str) -> tuple[str, ...]:
    """The relative subspaces a client sends for ``aggregation``."""
    return _method(aggregation).similarities


def aggregate(
    aggregation: str,
    spaces: Sequence[ClientSpace],
    *,
    weights: Sequence[float] | None = None,
    masks: Tensor | None = None,
) -> Tensor:
    """Merge the clients' spaces with the named method."""
    method = _method(aggregation)
    missing = [name for space in spaces for name in method.similarities if name not in space]
    if missing:
        raise ValueError(f"{aggregation} aggregation needs subspaces {method.similarities}, missing {sorted(set(missing))}")
    return method.merge(spaces, weights, masks)


@register_aggregation("mean")
def _mean(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """Relative Latent Space Aggregation: weighted masked mean of the cosine spaces."""
    return mean_merge([space["cosine"] for space in spaces], weights=weights, masks=masks)


@register_aggregation("product", SIMILARITIES)
def _product(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """The mean per similarity, then the product of invariances ("From Bricks to Bridges")."""
    merged = [mean_merge([space[name] for space in spaces], weights=weights, masks=masks) for name in SIMILARITIES]
    return product_merge(merged)


@register_aggregation("concat")
def _concat(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """The cosine spaces side by side (baseline; weights and masks do not apply)."""
    return concat_merge([space["cosine"] for space in spaces])


@register_aggregation("median")
def _median(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """Coordinate-wise median of the cosine spaces: half the clients must lie to move it."""
    return median_merge([space["cosine"] for space in spaces], masks=masks)


@register_aggregation("trimmed-mean")
def _trimmed_mean(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """Coordinate-wise mean of the cosine spaces without the largest and smallest values."""
    return trimmed_mean_merge([space["cosine"] for space in spaces], masks=masks)
