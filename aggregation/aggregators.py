"""Aggregation methods, one ``Aggregation`` per entry of ``relatlas.registries.AGGREGATIONS``:
which similarities clients must send, and how the server turns the clients'
subspaces into one merged space. A user's merge registers with ``register_aggregation``::

    @register_aggregation("mine", ("cosine", "l1"))
    def mine(spaces, weights, masks): ...

A client's space is a mapping ``similarity -> [N, m]`` tensor (N samples, m
anchors); a merge returns one finite ``[N, D]`` tensor (any D > 0), row i still
sample i. ``aggregate`` checks that of every merge, the user's included.

The robust merges (``median``, ``trimmed-mean``, ``krum``, ``multi-krum``) are
unweighted: a client's own sample count is exactly what a hostile client would
inflate. Each says how many hostile clients it withstands (``withstands``); the
operator declares how many there may be (``--max-hostile``, ``hostile_count``),
and a merge that cannot hold against that many is refused (``check_withstands``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from math import ceil

import torch
from torch import Tensor

from relatlas.aggregation.accumulators import Accumulator, MeanAccumulator, ProductAccumulator
from relatlas.aggregation.learned_combine import CombineFit, LabelledRows, LabelsError, fit_tanh_sum, fit_weighted_sum
from relatlas.aggregation.merge import (
    Combine,
    concat_merge,
    mean_merge,
    median_merge,
    product_merge,
    standardize_rows,
    sum_merge,
    trimmed_mean_merge,
)
from relatlas.aggregation.quantile_sketch import median_sketch, trimmed_mean_sketch
from relatlas.aggregation.selection import krum_select, krum_tolerance, selected_mean
from relatlas.registries import AGGREGATIONS

ClientSpace = Mapping[str, Tensor]
# (the clients' spaces, their weights or None, their sample masks [K, N] or None) -> the merged space
MergeFn = Callable[[Sequence[ClientSpace], Sequence[float] | None, Tensor | None], Tensor]
# clients n -> the most hostile clients among them a merge withstands
Tolerance = Callable[[int], int]

COSINE = ("cosine",)
PRODUCT_SIMILARITIES = ("cosine", "euclidean", "l1", "linf")  # one per invariance class ("From Bricks to Bridges")


@dataclass(frozen=True)
class Aggregation:
    """A merge and the relative subspaces it needs from every client.

    ``withstands``: how many hostile clients among n the merge withstands; a merge
    that has it is called with the declared count, ``merge(..., hostile=F)`` (``None``:
    none declared). Without it the merge withstands no hostile client.
    ``needs_labels``: the merge learns from labelled public rows and is called with
    them, ``merge(..., labelled=LabelledRows)``; every other merge is label-free.
    ``accumulator``: opens the same merge fed one client at a time (``aggregation/
    streaming.py``), called as ``merge`` is, ``hostile=F`` given if ``withstands``;
    ``None``: the merge needs every client's space at once (Krum compares all pairs)."""

    similarities: tuple[str, ...]
    merge: MergeFn
    withstands: Tolerance | None = None
    needs_labels: bool = False
    accumulator: Callable[..., Accumulator] | None = None


class AggregationError(ValueError):
    """A merge that returned something other than a finite ``[N, D]`` space."""


def register_aggregation(
    name: str,
    similarities: tuple[str, ...] = COSINE,
    withstands: Tolerance | None = None,
    accumulator: Callable[..., Accumulator] | None = None,
) -> Callable[[MergeFn], MergeFn]:
    """Register ``merge`` under ``name``; clients then send ``similarities``.

    ``merge(spaces, weights, masks)`` gets one mapping ``similarity -> [N, m]`` per
    client (possibly a single client: each client's own space is scored through the
    merge too), ``weights`` (K floats) or ``None``, and ``masks`` (``[K, N]`` booleans:
    the samples each client projected) or ``None``; it returns the merged ``[N, D]``
    tensor, finite, any D > 0. Anything else is refused in one line naming ``name``.
    With ``withstands`` (n -> the hostile clients it withstands), the merge also takes
    ``hostile``, the count the operator declared or ``None``. With ``accumulator``
    (an ``Accumulator`` factory, called as the merge is), replies can be merged as they arrive.
    """

    def decorate(merge: MergeFn) -> MergeFn:
        AGGREGATIONS.register(name, Aggregation(tuple(similarities), merge, withstands, accumulator=accumulator))
        return merge

    return decorate


def required_similarities(aggregation: str) -> tuple[str, ...]:
    """The relative subspaces a client sends for ``aggregation``."""
    return AGGREGATIONS.get(aggregation).similarities


def needs_labels(aggregation: str) -> bool:
    """Whether ``aggregation`` learns from labelled public rows (so is not label-free)."""
    return AGGREGATIONS.get(aggregation).needs_labels


def aggregate(
    aggregation: str,
    spaces: Sequence[ClientSpace],
    *,
    weights: Sequence[float] | None = None,
    masks: Tensor | None = None,
    hostile: int | None = None,
    labelled: LabelledRows | None = None,
) -> Tensor:
    """Merge the clients' spaces with the named method, sized against ``hostile``
    clients if given (refused where the merge cannot withstand them); a merge that
    does not return a finite ``[N, D]`` tensor raises ``AggregationError`` before
    anything scores it. ``labelled``: the public labelled rows a learned merge
    trains on (``needs_labels``; refused in one line without them), ignored by the others."""
    method = AGGREGATIONS.get(aggregation)
    if not spaces:
        raise ValueError(f"{aggregation} aggregation: nothing to merge, no client spaces")
    missing = [name for space in spaces for name in method.similarities if name not in space]
    if missing:
        raise ValueError(f"{aggregation} aggregation needs subspaces {method.similarities}, missing {sorted(set(missing))}")
    if hostile is not None:
        check_withstands(aggregation, len(spaces), hostile, f"{hostile} hostile")
    if method.needs_labels:
        if labelled is None:
            raise LabelsError(
                f"aggregation {aggregation!r} learns its combination from labelled public rows (the anchors' labels) "
                "and none were given; use a label-free aggregation such as product, or pass labelled rows"
            )
        merged = method.merge(spaces, weights, masks, labelled=labelled)
    elif method.withstands is None:
        merged = method.merge(spaces, weights, masks)
    else:
        merged = method.merge(spaces, weights, masks, hostile=hostile)
    check_merged(aggregation, merged, len(spaces[0][method.similarities[0]]), len(spaces), masks is not None)
    return merged


def hostile_count(max_hostile: float, clients: int) -> int:
    """The hostile clients declared among ``clients``: ``max_hostile`` itself if 1 or
    more (a count, a whole number), else that fraction of them, rounded up."""
    if max_hostile >= 1:
        if max_hostile != int(max_hostile):
            raise ValueError(f"max-hostile {max_hostile:g} is neither a fraction below 1 nor a whole count of clients")
        return int(max_hostile)
    if max_hostile < 0:
        raise ValueError(f"max-hostile must be a count or a fraction >= 0, got {max_hostile:g}")
    return ceil(max_hostile * clients - 1e-9)


def check_withstands(aggregation: str, clients: int, hostile: int, declared: str) -> None:
    """Refuse, in one line that starts with ``declared`` (what the operator said), a
    merge that cannot hold against ``hostile`` of ``clients``."""
    withstands = AGGREGATIONS.get(aggregation).withstands
    if withstands is None:
        if hostile:
            robust = [name for name in AGGREGATIONS.names() if AGGREGATIONS.get(name).withstands is not None]
            raise ValueError(f"aggregation {aggregation} withstands no hostile client ({declared}); use {', '.join(robust)}")
        return
    if hostile > withstands(clients):
        needed = next((n for n in range(clients + 1, clients + 4 * hostile + 4) if withstands(n) >= hostile), None)
        more = f" and needs {needed} clients for {hostile}" if needed else ""
        raise ValueError(
            f"{declared} is {hostile} of {clients} clients; {aggregation} withstands {withstands(clients)} of {clients}{more}: "
            "declare fewer or add clients"
        )


def check_merged(aggregation: str, merged: object, samples: int, clients: int, masked: bool) -> None:
    """The merge's output is a finite [samples, D > 0] tensor, or a one-line error naming the aggregation."""
    called = f"{clients} client{'s' if clients > 1 else ''}{', with masks' if masked else ''}"
    expected = f"expected a finite [{samples}, D] tensor (one row per sample, D > 0)"
    if not isinstance(merged, Tensor):
        raise AggregationError(f"aggregation {aggregation!r} returned a {type(merged).__name__} ({called}); {expected}")
    if merged.ndim != 2 or merged.shape[0] != samples or merged.shape[1] == 0:
        raise AggregationError(f"aggregation {aggregation!r} returned {list(merged.shape)} ({called}); {expected}")
    if not torch.isfinite(merged).all():
        bad = int((~torch.isfinite(merged)).sum())
        shape = list(merged.shape)
        raise AggregationError(f"aggregation {aggregation!r} returned {bad} non-finite values in {shape} ({called}); {expected}")


def _mean(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """Relative Latent Space Aggregation: weighted masked mean of the cosine spaces."""
    return mean_merge([space["cosine"] for space in spaces], weights=weights, masks=masks)


def _product(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None, *, combine: Combine) -> Tensor:
    """Product of invariances ("From Bricks to Bridges") across clients: each
    client's subspace is row-standardised before the mean per similarity, so a
    client whose encoder spreads distances 10x wider does not outweigh the others
    (a client's own space, scored alone, is normalised the same way); the means
    are normalised again and joined by ``combine``."""
    return product_merge(_subspace_means(spaces, weights, masks), combine=combine)


def _subspace_means(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> list[Tensor]:
    """Per similarity of the product, the mean of the clients' row-standardised subspaces."""
    return [
        mean_merge([standardize_rows(space[name]) for space in spaces], weights=weights, masks=masks)
        for name in PRODUCT_SIMILARITIES
    ]


def product_of_invariances(combine: Combine) -> Aggregation:
    """A product aggregation that joins its normalised subspaces with ``combine``
    (``concat_merge``, ``sum_merge``, or a user's fixed one)."""
    return Aggregation(
        PRODUCT_SIMILARITIES,
        partial(_product, combine=combine),
        accumulator=partial(ProductAccumulator, PRODUCT_SIMILARITIES, combine),
    )


def _learned_product(
    spaces: Sequence[ClientSpace],
    weights: Sequence[float] | None,
    masks: Tensor | None,
    *,
    labelled: LabelledRows,
    fit: CombineFit,
) -> Tensor:
    """The product with a combination ``fit`` trains on the labelled rows' own product
    subspaces, merged unweighted and in full: the same fit for the merged space and for
    each client's own, so the merged head stitched onto a client reads the same coordinates."""
    combine = labelled.combine(fit, lambda: [standardize_rows(s) for s in _subspace_means(labelled.spaces, None, None)])
    return _product(spaces, weights, masks, combine=combine)


def learned_product_of_invariances(fit: CombineFit) -> Aggregation:
    """A product aggregation whose combination ``fit`` learns from labelled public rows
    (``fit_tanh_sum``, ``fit_weighted_sum``, or a user's): not label-free."""
    return Aggregation(PRODUCT_SIMILARITIES, partial(_learned_product, fit=fit), needs_labels=True)


def _concat(spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None) -> Tensor:
    """The cosine spaces side by side (baseline; weights and masks do not apply)."""
    return concat_merge([space["cosine"] for space in spaces])


def _median(
    spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None, *, hostile: int | None
) -> Tensor:
    """Coordinate-wise median of the cosine spaces: half the clients must lie to move
    it, whatever the count declared (``hostile`` is checked, not needed)."""
    return median_merge([space["cosine"] for space in spaces], masks=masks)


def _trimmed_mean(
    spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None, *, hostile: int | None
) -> Tensor:
    """Coordinate-wise mean of the cosine spaces without the ``hostile`` largest and
    smallest values (none declared: 20 % each end)."""
    return trimmed_mean_merge([space["cosine"] for space in spaces], masks=masks, hostile=hostile)


def _krum(
    spaces: Sequence[ClientSpace], weights: Sequence[float] | None, masks: Tensor | None, *, hostile: int | None, multi: bool
) -> Tensor:
    """The cosine space of the client Krum selects, or (``multi``) the mean of the
    ``n - F`` it selects (``aggregation/selection.py``)."""
    cosine = [space["cosine"] for space in spaces]
    declared = krum_tolerance(len(cosine)) if hostile is None else hostile  # none declared: the most Krum withstands
    return selected_mean(cosine, krum_select(cosine, declared, len(cosine) - declared if multi else 1), masks)


def half_minus_one(clients: int) -> int:
    """The most hostile clients a coordinate-wise median or trim withstands: fewer than half."""
    return max((clients - 1) // 2, 0)


# The built-ins, registered by path in ``relatlas.registries``.
mean = Aggregation(COSINE, _mean, accumulator=MeanAccumulator)
product = product_of_invariances(concat_merge)
product_sum = product_of_invariances(sum_merge)
product_learned = learned_product_of_invariances(fit_tanh_sum)
product_weighted = learned_product_of_invariances(fit_weighted_sum)
concat = Aggregation(COSINE, _concat)
median = Aggregation(COSINE, _median, half_minus_one, accumulator=median_sketch)
trimmed_mean = Aggregation(COSINE, _trimmed_mean, half_minus_one, accumulator=trimmed_mean_sketch)
krum = Aggregation(COSINE, partial(_krum, multi=False), krum_tolerance)
multi_krum = Aggregation(COSINE, partial(_krum, multi=True), krum_tolerance)
