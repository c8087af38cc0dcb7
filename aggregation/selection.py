"""Selection merges in the spirit of Krum and Multi-Krum (Blanchard et al.,
NeurIPS 2017) on the clients' relative spaces.

Every client projects the same samples on the same anchors, so a client's whole
space, flattened, is one point; honest points lie close together. A client's
score is the sum of squared distances to its ``n - F - 2`` nearest other clients
(``F``: the hostile clients the operator declares). Krum keeps the lowest-scoring
client, Multi-Krum the ``n - F`` lowest. F colluders sending the same rows are
each other's nearest point, but with ``n >= 2F + 3`` each still counts at least
``F`` honest clients among its neighbours, which an honest client does not pay.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from relatlas.aggregation.merge import mean_merge

MIN_CLIENTS = 3  # below, which client lies cannot be told from the spaces: every client is kept


def krum_tolerance(clients: int) -> int:
    """The most hostile clients Krum withstands among ``clients``: ``n >= 2F + 3``."""
    return max((clients - 3) // 2, 0)


def krum_scores(spaces: Sequence[Tensor], hostile: int) -> Tensor:
    """Each client's sum of squared distances to its ``n - hostile - 2`` nearest other clients."""
    flat = torch.stack([space.reshape(-1) for space in spaces]).double()
    neighbours = len(spaces) - hostile - 2
    if neighbours < 1:
        raise ValueError(f"Krum scores {len(spaces)} clients against {hostile} hostile: it needs {hostile + 3} clients or more")
    distances = torch.cdist(flat, flat).pow(2)
    distances.fill_diagonal_(torch.inf)
    return distances.sort(dim=1).values[:, :neighbours].sum(dim=1)


def krum_select(spaces: Sequence[Tensor], hostile: int, keep: int) -> list[int]:
    """Positions of the ``keep`` lowest-scoring clients, in order (ties: the first),
    scored against ``hostile`` clients. All clients below three."""
    if len(spaces) < MIN_CLIENTS:
        return list(range(len(spaces)))
    scores = krum_scores(spaces, hostile)
    return sorted(torch.argsort(scores, stable=True)[:keep].tolist())


def selected_mean(spaces: Sequence[Tensor], chosen: Sequence[int], masks: Tensor | None) -> Tensor:
    """Unweighted mean of the chosen clients' spaces; with ``masks``, a sample none of
    them projected takes all of them (as a sample no client owns does)."""
    kept = [spaces[i] for i in chosen]
    if masks is None:
        return mean_merge(kept)
    mask = masks[list(chosen)].to(torch.bool).clone()
    mask[:, ~mask.any(dim=0)] = True
    return mean_merge(kept, masks=mask)
