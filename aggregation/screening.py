"""An outlier screen for the clients' relative spaces, before any merge.

Every client projects the same samples on the same anchors, so honest spaces
agree up to what their encoders learned differently; a space made up or scaled
by a hostile client lies far from the rest. A client's score is its root mean
square distance to the coordinate-wise median of all clients' spaces, divided by
the median of these distances over the clients: scale-free, and the median
centre moves little for one liar among three or more. The score of a space is
its largest over the similarities; a client scoring above the threshold is
dropped. With fewer than three clients nobody is screened: which of two
disagreeing clients lies cannot be told from their spaces.
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
        stacked = torch.stack([space[name] for space in spaces]).double()
        centre = median_merge(list(stacked))
        distances = (stacked - centre).pow(2).mean(dim=(1, 2)).sqrt()
        typical = distances.median()
        ratio = distances / typical if typical > 0 else torch.where(distances > 0, torch.inf, 0.0)
        scores = torch.maximum(scores, ratio)
    return scores.tolist()


def screen(spaces: Sequence[Mapping[str, Tensor]], threshold: float) -> tuple[list[float], dict[int, str]]:
    """(every client's score, dropped position -> reason); ``threshold`` 0 drops nobody."""
    scores = outlier_scores(spaces)
    dropped = {
        i: f"outlier: its space is {score:.1f}x the median client's distance from the median space (threshold {threshold:g})"
        for i, score in enumerate(scores)
        if 0 < threshold < score
    }
    return scores, dropped
