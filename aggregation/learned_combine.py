"""The product of invariances' learned combinations ("From Bricks to Bridges",
Cannistraci et al., ICLR 2024): instead of concatenating or summing the normalised
subspaces, a small module per subspace is trained, with a linear classifier on top,
on the labels of some rows, and then joins the subspaces of every row.

Labels are what separates these from every other merge: they learn only from
``LabelledRows``, the relative rows of public samples whose labels the server holds
(the run's anchors), never from the samples a merged space is scored on. Pure
torch, seeded: the same rows, labels and seed give the same combination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from relatlas.aggregation.merge import Combine

# (normalised subspaces of the labelled rows [L, m] each, their labels [L], seed) -> the fitted combination
CombineFit = Callable[[Sequence[Tensor], Tensor, int], Combine]

EPOCHS = 200
LEARNING_RATE = 1e-2
WEIGHT_DECAY = 1e-3


class LabelsError(ValueError):
    """A learned combination asked for without labelled rows, or with rows it cannot learn from."""


@dataclass(frozen=True)
class LabelledRows:
    """Each client's relative subspaces of L public labelled samples (``similarity ->
    [L, m]``), their labels and the seed of the fit. The labels of the samples a
    space is scored on must never be among them."""

    spaces: Sequence[Mapping[str, Tensor]]
    labels: Tensor
    seed: int = 0
    _fitted: dict[CombineFit, Combine] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.spaces:
            raise LabelsError("labelled rows: no client spaces")
        if self.labels.ndim != 1 or self.labels.dtype.is_floating_point:
            got = f"{self.labels.dtype} {list(self.labels.shape)}"
            raise LabelsError(f"labelled rows: labels must be a 1-D integer tensor, got {got}")
        rows = {len(subspace) for space in self.spaces for subspace in space.values()}
        if rows != {len(self.labels)}:
            raise LabelsError(f"labelled rows: {len(self.labels)} labels for subspaces of {sorted(rows)} rows")
        classes = len(torch.unique(self.labels))
        if classes < 2:
            raise LabelsError(f"labelled rows hold {classes} class; a learned combination needs at least 2 to learn from")

    def combine(self, fit: CombineFit, subspaces: Callable[[], Sequence[Tensor]]) -> Combine:
        """``fit`` trained once on ``subspaces()`` (these rows' normalised subspaces) and kept:
        the merged space and each client's own then read the same combination, fitted once a round."""
        if fit not in self._fitted:
            self._fitted[fit] = fit(subspaces(), self.labels, self.seed)
        return self._fitted[fit]


class _TanhSum(nn.Module):
    """Per subspace a Linear+Tanh, the outputs summed (the reference code's NonLinearSumAggregation)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        if len(set(dims)) != 1:
            raise LabelsError(f"a summed combination needs subspaces of one width, got {list(dims)}")
        self.maps = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.Tanh()) for d in dims)
        self.out_dim = dims[0]

    def forward(self, subspaces: Sequence[Tensor]) -> Tensor:
        return torch.stack([f(x) for f, x in zip(self.maps, subspaces)]).sum(dim=0)


class _WeightedSum(nn.Module):
    """A softmax-weighted sum of the subspaces, one weight each (the reference code's WeightedAvgAggregation)."""

    def __init__(self, dims: Sequence[int]) -> None:
        super().__init__()
        if len(set(dims)) != 1:
            raise LabelsError(f"a summed combination needs subspaces of one width, got {list(dims)}")
        self.logits = nn.Parameter(torch.zeros(len(dims)))
        self.out_dim = dims[0]

    def forward(self, subspaces: Sequence[Tensor]) -> Tensor:
        return torch.einsum("knm,k->nm", torch.stack(list(subspaces)), self.logits.softmax(dim=0))


def _fit(module: Callable[[Sequence[int]], nn.Module], subspaces: Sequence[Tensor], labels: Tensor, seed: int) -> Combine:
    """Train ``module`` and a linear classifier on the labelled rows (full batch,
    cross-entropy, Adam), and return the module, frozen, as the combination."""
    _, targets = torch.unique(labels, return_inverse=True)  # the classes present, numbered 0..C-1
    inputs = [s.detach().float() for s in subspaces]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        combine = module([s.shape[1] for s in inputs])
        head = nn.Linear(combine.out_dim, int(targets.max()) + 1)
        params = [*combine.parameters(), *head.parameters()]
        optimizer = torch.optim.Adam(params, lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
        for _ in range(EPOCHS):
            optimizer.zero_grad()
            nn.functional.cross_entropy(head(combine(inputs)), targets).backward()
            optimizer.step()
    combine.requires_grad_(False)

    def apply(spaces: Sequence[Tensor]) -> Tensor:
        with torch.no_grad():
            return combine([s.float() for s in spaces]).to(spaces[0].dtype)

    return apply


def fit_tanh_sum(subspaces: Sequence[Tensor], labels: Tensor, seed: int) -> Combine:
    """The paper's learned aggregation: a Linear+Tanh per subspace, summed."""
    return _fit(_TanhSum, subspaces, labels, seed)


def fit_weighted_sum(subspaces: Sequence[Tensor], labels: Tensor, seed: int) -> Combine:
    """A learned weight per subspace (softmax), summed: four numbers to fit, so few labelled rows suffice."""
    return _fit(_WeightedSum, subspaces, labels, seed)
