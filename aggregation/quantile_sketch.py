"""The coordinate-wise median and trimmed mean, streamed in bounded memory.

An order statistic cannot be kept exactly in less than every value, so the
sketch holds the first ``capacity`` clients' cosine spaces as they are, and the
result is then the exact merge. Past that, it compacts level by level, per
entry, as a KLL sketch does: ``capacity`` values are sorted and each pair of
neighbours becomes their mean at twice the weight (which keeps their sum, where
keeping one of each pair would not); the result is the weighted median or
trimmed mean of what is left. It holds at most ``capacity`` spaces, plus
``capacity / 2`` per level above, ``log2(clients / capacity)`` levels. The error
against the exact merge is measured by ``relatlas.aggregation.streaming``
(docs: Performance). A compaction keeps ranks, so a hostile extreme stays at the
end the trim cuts, paired at worst with its honest neighbour (cosines are
bounded, so is what leaks). With masks, a sample's odd value out in a compaction
keeps its value at the doubled weight, at the top and the bottom in turn. Weights are ignored, as by the
batch robust merges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from relatlas.aggregation.accumulators import check_same_shape, client_mask
from relatlas.aggregation.merge import TRIM, check_trim, median_merge, trim_counts, trimmed_mean_merge

CAPACITY = 16  # clients kept as they are; a merge of at most this many is exact

# the exact merge of the kept spaces, given their masks [K, N]
ExactMerge = Callable[[Sequence[Tensor], Tensor], Tensor]
# (values sorted per entry [S, N, m], their weights [S, N, m], the clients that projected each sample [N, 1]) -> [N, m]
WeightedMerge = Callable[[Tensor, Tensor, Tensor], Tensor]


class QuantileSketch:
    """A coordinate-wise order-statistic merge of one similarity, fed client by client."""

    def __init__(self, exact: ExactMerge, weighted: WeightedMerge, capacity: int = CAPACITY, similarity: str = "cosine") -> None:
        if capacity < 2 or capacity % 2:
            raise ValueError(f"sketch capacity must be an even number of clients >= 2, got {capacity}")
        self.exact, self.weighted, self.capacity, self.similarity = exact, weighted, capacity, similarity
        self._kept: list[tuple[Tensor, Tensor]] = []  # (space, mask) of clients not yet compacted, weight 1
        self._levels: list[list[Tensor]] = []  # level h: values [*, N, m] of weight 2 ** (h + 1), NaN where unseen
        self._seen: Tensor | None = None  # [N] clients that projected each sample
        self._flip = 0

    def add(self, space: Mapping[str, Tensor], weight: float = 1.0, mask: Tensor | None = None) -> None:
        values = space[self.similarity]
        check_same_shape(self._kept[0][0] if self._kept else None, values)  # never empty once a client is added
        mask = client_mask(mask, values.shape[0])
        self._seen = mask.long() if self._seen is None else self._seen + mask.long()
        if len(self._kept) == self.capacity:  # one client past the capacity: compact, so a merge of `capacity` is exact
            self._push(0, torch.stack([_unseen_as_nan(v, m) for v, m in self._kept]))
            self._kept = []
        self._kept.append((values, mask))

    def _push(self, level: int, values: Tensor) -> None:
        """Compact ``capacity`` values of one level into half as many on the next."""
        sign = 1.0 - 2.0 * self._flip  # pairs counted from the bottom, then from the top: the odd one out alternates ends
        self._flip ^= 1
        ordered = sign * (sign * values).sort(dim=0).values  # unseen (NaN) last
        lower, upper = ordered[0::2], ordered[1::2]
        kept = torch.where(upper.isnan(), lower, (lower + upper) / 2)  # an odd one out keeps its value
        if len(self._levels) == level:
            self._levels.append([])
        self._levels[level].append(kept)
        held = torch.cat(self._levels[level])
        if len(held) >= self.capacity:
            self._levels[level] = []
            self._push(level + 1, held)

    def result(self) -> Tensor:
        if self._seen is None:
            raise ValueError("nothing to merge: no client spaces")
        if bool((self._seen == 0).any()):
            raise ValueError(f"samples {torch.nonzero(self._seen == 0).flatten()[:5].tolist()} were projected by no client")
        if not self._levels:
            return self.exact([v for v, _ in self._kept], torch.stack([m for _, m in self._kept]))
        parts = [(_unseen_as_nan(v, m)[None], 1.0) for v, m in self._kept]
        parts += [(chunk, 2.0 ** (h + 1)) for h, level in enumerate(self._levels) for chunk in level]
        values = torch.cat([v for v, _ in parts]).double()
        weights = torch.cat([torch.full((len(v), 1, 1), w, dtype=torch.float64) for v, w in parts]).expand_as(values)
        ordered, order = values.sort(dim=0)
        weights = torch.where(ordered.isnan(), 0.0, weights.gather(0, order))
        merged = self.weighted(ordered.nan_to_num(0.0), weights, self._seen[:, None])
        return merged.to(self._kept[0][0].dtype)


def _unseen_as_nan(values: Tensor, mask: Tensor) -> Tensor:
    return values.masked_fill(~mask[:, None], float("nan"))


def weighted_median(ordered: Tensor, weights: Tensor, seen: Tensor) -> Tensor:
    """Per entry, the mean of the lower and upper weighted medians (with unit weights,
    ``median_merge``'s mean of the two middle values)."""
    cumulative = weights.cumsum(dim=0)
    half = cumulative[-1:] / 2
    lower = (cumulative < half).sum(dim=0, keepdim=True)
    upper = (cumulative <= half).sum(dim=0, keepdim=True).clamp(max=len(ordered) - 1)
    return (ordered.gather(0, lower) + ordered.gather(0, upper)).squeeze(0) / 2


def weighted_trimmed_mean(ordered: Tensor, weights: Tensor, seen: Tensor, *, trim: float, hostile: int | None) -> Tensor:
    """Per entry, the weighted mean of the values wholly inside the ``trim_counts``
    clients' weight cut at each end (scaled to the sketch's weight of the entry,
    which approximates ``seen``): a value that holds any of the cut weight is
    dropped whole, so a hostile extreme paired with an honest one does not leak
    back in. Where that drops everything, the weighted median."""
    cumulative = weights.cumsum(dim=0)
    total = cumulative[-1:]
    cut = trim_counts(seen, trim=trim, hostile=hostile).to(total.dtype)[None] * total / seen[None]
    inside = (cumulative - weights >= cut - 1e-9) & (cumulative <= total - cut + 1e-9) & (weights > 0)
    kept = torch.where(inside, weights, 0.0)
    mean = (kept * ordered).sum(dim=0) / kept.sum(dim=0).clamp(min=1e-300)
    return torch.where(kept.sum(dim=0) > 0, mean, weighted_median(ordered, weights, seen))


def median_sketch(capacity: int = CAPACITY, *, hostile: int | None = None) -> QuantileSketch:
    """The median merge, streamed (``hostile`` is checked by the caller, not needed)."""
    return QuantileSketch(lambda spaces, masks: median_merge(spaces, masks=masks), weighted_median, capacity)


def trimmed_mean_sketch(capacity: int = CAPACITY, *, hostile: int | None = None, trim: float = TRIM) -> QuantileSketch:
    """The trimmed-mean merge, streamed: ``hostile`` values (else the ``trim`` fraction) cut at each end."""
    check_trim(trim, hostile)  # now, not once every client has been added

    def exact(spaces: Sequence[Tensor], masks: Tensor) -> Tensor:
        return trimmed_mean_merge(spaces, masks=masks, trim=trim, hostile=hostile)

    def weighted(ordered: Tensor, weights: Tensor, seen: Tensor) -> Tensor:
        return weighted_trimmed_mean(ordered, weights, seen, trim=trim, hostile=hostile)

    return QuantileSketch(exact, weighted, capacity)
