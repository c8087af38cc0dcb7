"""An outlier screen for the clients' relative spaces, before any merge.

Every client projects the same samples on the same anchors, so honest spaces
agree up to what their encoders learned differently; a space made up or scaled
by a hostile client lies far from the rest. A client's score is its root mean
square distance to the coordinate-wise median of all clients' spaces, divided by
the median of these distances over the clients: scale-free, and the median
centre moves little for one liar among three or more. The score of a space is
its largest over the similarities; a client scoring above the threshold is
dropped. With fewer than three clients nobody is screened: which of two
disagreeing clients lies cannot be told from their spaces. A screen of clients
that arrive one by one scores a later client against the median space and typical
distance of the first ones (``screen_reference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from relatlas.aggregation.merge import median_merge

MIN_CLIENTS = 3


def outlier_scores(spaces: Sequence[Mapping[str, Tensor]]) -> list[float]:
    """Each client's distance to the median space, over the median such distance."""
    if len(spaces) < MIN_CLIENTS:
        return [0.0] * len(spaces)
    scores = torch.zeros(len(spaces), dtype=torch.float64)
    for name in spaces[0]:
        _, distances = _centre_and_distances(torch.stack([space[name] for space in spaces]).double())
        scores = torch.maximum(scores, _ratio(distances, distances.median()))
    return scores.tolist()


def screen_reference(spaces: Sequence[Mapping[str, Tensor]]) -> dict[str, tuple[Tensor, Tensor]]:
    """Per similarity, the median of ``spaces`` and their median distance from it: what a client that
    comes after them is scored against (``reference_score``), so a screen need not hold every client."""
    reference = {}
    for name in spaces[0]:
        centre, distances = _centre_and_distances(torch.stack([space[name] for space in spaces]).double())
        reference[name] = (centre, distances.median())
    return reference


def reference_score(space: Mapping[str, Tensor], reference: Mapping[str, tuple[Tensor, Tensor]]) -> float:
    """A client's ``outlier_scores`` score against a ``screen_reference`` of other clients."""
    return max(
        float(_ratio(_distances(space[name].double()[None], centre), typical)) for name, (centre, typical) in reference.items()
    )


def outlier_reason(score: float, threshold: float) -> str | None:
    """Why a client of ``score`` is dropped, or None if it is not; ``threshold`` 0 drops nobody."""
    if 0 < threshold < score:
        return f"outlier: its space is {score:.1f}x the median client's distance from the median space (threshold {threshold:g})"
    return None


def screen(spaces: Sequence[Mapping[str, Tensor]], threshold: float) -> tuple[list[float], dict[int, str]]:
    """(every client's score, dropped position -> reason); ``threshold`` 0 drops nobody."""
    scores = outlier_scores(spaces)
    reasons = {i: outlier_reason(score, threshold) for i, score in enumerate(scores)}
    return scores, {i: reason for i, reason in reasons.items() if reason is not None}


def _centre_and_distances(stacked: Tensor) -> tuple[Tensor, Tensor]:
    """The coordinate-wise median of ``stacked`` [K, N, m] and each client's RMS distance to it."""
    centre = median_merge(list(stacked))
    return centre, _distances(stacked, centre)


def _distances(stacked: Tensor, centre: Tensor) -> Tensor:
    return (stacked - centre).pow(2).mean(dim=(1, 2)).sqrt()


def _ratio(distances: Tensor, typical: Tensor) -> Tensor:
    return distances / typical if typical > 0 else torch.where(distances > 0, torch.inf, 0.0)
