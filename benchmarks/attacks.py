"""The standard attacks of the poisoning literature, re-expressed on the clients'
relative spaces (cosine rows to the anchors) for ``relatlas bench attacks``.

A row attack sees every client's honest cosine space (``[K, N, m]``: the
omniscient colluders of ALIE and IPM, the strongest case) and the positions of
the hostile clients, and returns what each hostile client sends instead
(``[F, N, m]``). Every value is clipped to [-1, 1], the range the server checks
cosines against (``server/replies.py``): an attacker who knows the checks passes
them. Label flipping is not a row attack: the hostile client trains on flipped
labels and sends its honest rows (``flip_labels``, on the client).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

# (every client's honest cosine space [K, N, m], hostile positions, generator) -> the hostile clients' rows [F, N, m]
RowAttack = Callable[[Tensor, Sequence[int], torch.Generator], Tensor]

IPM_EPSILON = 0.5  # inner-product manipulation: the colluders send -epsilon times the honest mean
GAUSSIAN_SIGMA = 1.0  # Gaussian attack: each hostile client sends N(0, sigma^2) rows


def _honest(spaces: Tensor, hostile: Sequence[int]) -> Tensor:
    return spaces[[i for i in range(len(spaces)) if i not in set(hostile)]]


def alie(spaces: Tensor, hostile: Sequence[int], generator: torch.Generator) -> Tensor:
    """A Little Is Enough (Baruch et al., NeurIPS 2019): every colluder sends the honest
    mean minus z honest standard deviations per entry, z the largest shift that the
    ``n // 2 + 1 - F`` honest clients needed for a majority still straddle."""
    n, f = len(spaces), len(hostile)
    supporters = n // 2 + 1 - f
    z = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor((n - supporters) / n)))
    honest = _honest(spaces, hostile)
    row = honest.mean(dim=0) - z * honest.std(dim=0, unbiased=False)
    return row.expand(f, *row.shape)


def inner_product(spaces: Tensor, hostile: Sequence[int], generator: torch.Generator) -> Tensor:
    """Inner-product manipulation (Xie et al., UAI 2020): every colluder sends
    ``-epsilon`` times the honest mean, so the merge's inner product with it turns negative."""
    row = -IPM_EPSILON * _honest(spaces, hostile).mean(dim=0)
    return row.expand(len(hostile), *row.shape)


def sign_flip(spaces: Tensor, hostile: Sequence[int], generator: torch.Generator) -> Tensor:
    """Each hostile client sends its own honest rows negated."""
    return -spaces[list(hostile)]


def gaussian(spaces: Tensor, hostile: Sequence[int], generator: torch.Generator) -> Tensor:
    """Each hostile client sends its own draw of N(0, sigma^2) per entry."""
    shape = (len(hostile), *spaces.shape[1:])
    return GAUSSIAN_SIGMA * torch.randn(shape, generator=generator, dtype=spaces.dtype)


def identical_rows(spaces: Tensor, hostile: Sequence[int], generator: torch.Generator) -> Tensor:
    """The colluders send one and the same made-up space (uniform cosines): each is the
    others' nearest neighbour, which is what a distance-based selection trusts."""
    row = torch.rand(spaces.shape[1:], generator=generator, dtype=spaces.dtype) * 2 - 1
    return row.expand(len(hostile), *row.shape)


ROW_ATTACKS: dict[str, RowAttack] = {
    "alie": alie,
    "inner-product": inner_product,
    "sign-flip": sign_flip,
    "gaussian": gaussian,
    "identical-rows": identical_rows,
}
LABEL_FLIP = "label-flip"
ATTACKS = (*ROW_ATTACKS, LABEL_FLIP)


def attacked(spaces: Tensor, hostile: Sequence[int], attack: str, seed: int) -> Tensor:
    """``spaces`` [K, N, m] with the hostile clients' rows replaced by ``attack``'s, clipped to [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    sent = spaces.clone()
    sent[list(hostile)] = ROW_ATTACKS[attack](spaces, hostile, generator).clamp(-1.0, 1.0).to(spaces.dtype)
    return sent


def flip_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Label flipping (Tolpegin et al., ESORICS 2020, all classes): class c trains as C - 1 - c."""
    return num_classes - 1 - labels


def hostile_positions(clients: int, fraction: float) -> list[int]:
    """The last ``round(fraction * clients)`` clients (at least one) are hostile."""
    count = max(1, round(fraction * clients))
    if count >= clients:
        raise ValueError(f"{fraction:g} of {clients} clients leaves no honest client")
    return list(range(clients - count, clients))
