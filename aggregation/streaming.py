"""Merging replies as they arrive: ``fold`` is ``aggregate`` fed one client at a
time through the aggregation's ``accumulator``, so only running statistics are
held, never every client's space. ``sketch_error`` measures how far a merge that
is streamed approximately (median, trimmed mean past ``CAPACITY`` clients) lands
from the exact one::

    python -m relatlas.aggregation.streaming
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor

from relatlas.aggregation.accumulators import Accumulator
from relatlas.aggregation.aggregators import ClientSpace, aggregate, check_merged, check_withstands
from relatlas.registries import AGGREGATIONS


class StreamingError(ValueError):
    """An aggregation that needs every client's space at once, asked to merge them as they arrive."""


def streams(aggregation: str) -> bool:
    """Whether ``aggregation`` can merge replies as they arrive (it has an accumulator)."""
    return AGGREGATIONS.get(aggregation).accumulator is not None


def open_accumulator(aggregation: str, hostile: int | None = None) -> Accumulator:
    """A fresh accumulator of ``aggregation``, sized against ``hostile`` clients if it withstands any."""
    method = AGGREGATIONS.get(aggregation)
    if method.accumulator is None:
        streaming = ", ".join(name for name in AGGREGATIONS.names() if streams(name))
        raise StreamingError(
            f"aggregation {aggregation!r} needs every client's space at once and cannot merge replies as they arrive; "
            f"these can: {streaming}"
        )
    return method.accumulator() if method.withstands is None else method.accumulator(hostile=hostile)


def fold(
    aggregation: str,
    spaces: Iterable[ClientSpace],
    *,
    weights: Sequence[float] | None = None,
    masks: Tensor | None = None,
    hostile: int | None = None,
) -> Tensor:
    """The merge of ``spaces`` taken one by one (each may be dropped once added):
    what ``aggregate`` gives, exactly for ``mean`` and the product, within the
    sketch's error for the robust merges; checked the same way."""
    accumulator = open_accumulator(aggregation, hostile)
    similarities = AGGREGATIONS.get(aggregation).similarities
    clients, samples = 0, 0
    for clients, space in enumerate(spaces, start=1):
        missing = [name for name in similarities if name not in space]
        if missing:
            raise ValueError(f"{aggregation} aggregation needs subspaces {similarities}, missing {sorted(missing)}")
        for given, what in ((weights, "weights"), (masks, "masks")):
            if given is not None and len(given) < clients:
                raise ValueError(f"{what} for {len(given)} clients, and client {clients} came")
        weight = 1.0 if weights is None else float(weights[clients - 1])
        accumulator.add(space, weight, None if masks is None else masks[clients - 1])
        samples = len(space[similarities[0]])
    if not clients:
        raise ValueError(f"{aggregation} aggregation: nothing to merge, no client spaces")
    for given, what in ((weights, "weights"), (masks, "masks")):
        if given is not None and len(given) != clients:
            raise ValueError(f"{what} for {len(given)} clients, and {clients} came")
    if hostile is not None:
        check_withstands(aggregation, clients, hostile, f"{hostile} hostile")
    merged = accumulator.result()
    check_merged(aggregation, merged, samples, clients, masks is not None)
    return merged


def sketch_error(
    aggregation: str, spaces: Sequence[ClientSpace], *, masks: Tensor | None = None, hostile: int | None = None
) -> Tensor:
    """Per entry, the absolute difference between ``aggregation`` streamed and merged at once."""
    exact = aggregate(aggregation, spaces, masks=masks, hostile=hostile)
    return (fold(aggregation, spaces, masks=masks, hostile=hostile) - exact).abs()


def honest_spaces(clients: int, samples: int, anchors: int, spread: float, seed: int) -> tuple[Tensor, list[ClientSpace]]:
    """A shared cosine space in [-0.9, 0.9] and ``clients`` copies of it with Gaussian noise of ``spread``:
    honest clients that agree up to what their encoders learned differently."""
    generator = torch.Generator().manual_seed(seed)
    shared = (torch.rand(samples, anchors, generator=generator) * 2 - 1) * 0.9
    return shared, [{"cosine": shared + spread * torch.randn(samples, anchors, generator=generator)} for _ in range(clients)]


def main() -> None:
    """Print the sketch's error at growing client counts (200 samples, 32 anchors, noise 0.1, seed 0), without
    and with masks (each client projects a sample with odds 0.6), next to the exact merge's own error against
    the shared space: the sampling noise the sketch adds to."""
    print("| aggregation | clients | sketch vs exact: mean | max | with masks: mean | max | exact vs shared: mean |")
    print("|---|---|---|---|---|---|---|")
    for aggregation in ("median", "trimmed-mean"):
        for clients in (16, 17, 64, 256, 1024):
            shared, spaces = honest_spaces(clients, 200, 32, 0.1, seed=0)
            masks = torch.rand(clients, 200, generator=torch.Generator().manual_seed(1)) < 0.6
            masks[0] = True
            error, masked = sketch_error(aggregation, spaces), sketch_error(aggregation, spaces, masks=masks)
            own = (aggregate(aggregation, spaces) - shared).abs().mean()
            print(
                f"| {aggregation} | {clients} | {error.mean():.4f} | {error.max():.4f} "
                f"| {masked.mean():.4f} | {masked.max():.4f} | {own:.4f} |"
            )


if __name__ == "__main__":
    main()
