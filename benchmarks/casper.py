"""CaSpeR (Frascaroli et al.): a Laplacian spectral regulariser for rehearsal,
as the reference code (Mammoth) computes it. Steps follow ALGORITHMS.md section 6.

Graph: the binary symmetric k-NN graph of the latent features (i~j if either is
among the other's ``k`` nearest, squared Euclidean distance). A hard top-k has
no gradient, so, like the reference, the adjacency is ``hard + (w - w.detach())``:
its value is the binary graph, its gradient that of ``w + w.T``, the sum of ``k``
rounds of a continuous nearest-neighbour relaxation (Plötz & Roth, "Neural
Nearest Neighbors Networks", 2018) at temperature 1.

Indexing: eigenvalues of the normalised Laplacian ascending, ``l_1 <= l_2 <= ...``;
the loss is ``l_1 + ... + l_{p+1} - l_{p+2}``, the reference code's form, one
higher than the paper's ``sum_{j<=p} l_j - l_{p+1}``. A graph of exactly ``p``
components scores ``l_{p+1} - l_{p+2}``; one of ``p + 1`` components scores
``-l_{p+2}``, lower still.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from relatlas.benchmarks.rehearsal import buffer_arrays, replay_storage

LOG1MEXP_GUARD = 1e-7  # bounds log1mexp's backward pass where its derivative diverges, as the reference does


def squared_distances(features: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances, exactly symmetric."""
    norms = features.pow(2).sum(dim=1)
    d2 = (norms[:, None] + norms[None, :] - 2 * features @ features.T).clamp_min(0)
    return (d2 + d2.T) / 2


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0``, exact in value (log1p far from 0, expm1
    near it); the gradient, which diverges at 0, comes from ``log(guard - expm1(x))``."""
    value = torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))
    guarded = torch.log(LOG1MEXP_GUARD - torch.expm1(x))
    return value.detach() + (guarded - guarded.detach())


def soft_knn(d2: Tensor, k: int) -> Tensor:
    """Row i: the sum of ``k`` softmax weights over the other points, round r
    choosing the r-th nearest neighbour; each round's weight is then taken out of
    the logits by adding ``log(1 - weight)`` (Plötz & Roth's continuous k-NN)."""
    eye = torch.eye(len(d2), dtype=torch.bool, device=d2.device)
    logits = -d2.masked_fill(eye, math.inf)
    total = torch.zeros_like(d2)
    for _ in range(k):
        log_weights = torch.log_softmax(logits, dim=1)
        total = total + log_weights.exp()
        logits = logits + log1mexp(log_weights)
    return total


def hard_knn(d2: Tensor, k: int) -> Tensor:
    """The symmetric binary k-NN graph, without self-loops, as 0/1 values."""
    eye = torch.eye(len(d2), dtype=torch.bool, device=d2.device)
    neighbours = d2.masked_fill(eye, math.inf).topk(k, dim=1, largest=False).indices
    mask = torch.zeros_like(eye).scatter_(1, neighbours, True)
    return (mask | mask.T).to(d2.dtype)


def knn_adjacency(features: Tensor, k: int) -> Tensor:
    """The binary symmetric k-NN graph in value, the gradient of its symmetrised
    soft relaxation: ``hard + (w - w.detach())``."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k-NN graph needs 1 <= k < number of points; got k={k}, {n} points")
    d2 = squared_distances(features)
    soft = soft_knn(d2, k)
    soft = soft + soft.T
    return hard_knn(d2.detach(), k) + (soft - soft.detach())


def normalized_laplacian(adjacency: Tensor) -> Tensor:
    """``I - D^-1/2 A D^-1/2``, degrees from the rows of A (a k-NN graph has none below k)."""
    inv_sqrt = adjacency.sum(dim=1).rsqrt()
    eye = torch.eye(len(adjacency), dtype=adjacency.dtype, device=adjacency.device)
    return eye - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]


def spectral_gap_loss(eigenvalues: Tensor, p: int) -> Tensor:
    """``l_1 + ... + l_{p+1} - l_{p+2}`` of ascending eigenvalues (the reference's indexing)."""
    if len(eigenvalues) < p + 2:
        raise ValueError(f"the CaSpeR loss with p={p} needs at least {p + 2} eigenvalues, got {len(eigenvalues)}")
    return eigenvalues[: p + 1].sum() - eigenvalues[p + 1]


def casper_loss(features: Tensor, p: int, k: int) -> Tensor:
    """The CaSpeR loss of a batch of latent features from ``p`` classes. In float64:
    eigenvalue gradients of near-degenerate spectra are sensitive to rounding."""
    laplacian = normalized_laplacian(knn_adjacency(features.double(), k))
    return spectral_gap_loss(torch.linalg.eigvalsh(laplacian), p).to(features.dtype)


def distinct_union(first: tuple[Tensor, Tensor], second: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """(inputs, labels) of both, each distinct input once, in order of first
    appearance: Replay's and DER's minibatches already hold buffer samples."""
    x, y = torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])
    _, inverse = torch.unique(x.flatten(1), dim=0, return_inverse=True)
    positions = torch.arange(len(x), device=x.device)
    firsts = torch.full((int(inverse.max()) + 1,), len(x), device=x.device).scatter_reduce(0, inverse, positions, "amin")
    keep = firsts.sort().values
    return x[keep], y[keep]


def balanced_batch(labels: Tensor, classes: int, size: int, generator: torch.Generator) -> tuple[Tensor, int]:
    """Row indices of ``size // c`` samples (or all there are) from each of ``c``
    random classes present in ``labels``, ``c = min(classes, present)``; returns
    (rows, c). Draws from ``generator`` only."""
    present = labels.unique().cpu()
    chosen = present[torch.randperm(len(present), generator=generator)[:classes]]
    per_class = size // len(chosen)
    rows = []
    for cls in chosen:
        members = (labels == cls).nonzero().squeeze(1).cpu()
        rows.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(rows).to(labels.device), len(chosen)


def embedder_features(model: nn.Module, x: Tensor) -> Tensor:
    """The latent space of the project's ``Classifier``: its embedder's output."""
    return model.embedder(x)


def experience_classes(strategy: SupervisedTemplate) -> int:
    """How many classes the experience being trained holds (the reference's classes per task)."""
    return len(strategy.experience.dataset.targets.uniques)


class CasperError(RuntimeError):
    """CaSpeR was attached to a strategy it cannot regularise."""


class CaSpeRPlugin(SupervisedPlugin):
    """Adds ``rho * casper_loss`` to the training loss from the second experience on.

    Each training step draws a class-balanced graph batch from the union of the
    replay buffer (a snapshot taken when the experience starts) and the current
    minibatch, so the classes being learned are in the graph, as in the reference,
    whose buffer takes in every training batch.

    Parameters
    ----------
    rho
        Weight of the loss (0.01 in the reference code); 0 computes and draws nothing.
    classes
        ``p``: classes per graph batch (fewer if fewer are present); 0: as many
        as the experience being trained holds.
    batch
        Samples per graph batch; 0: the strategy's training minibatch size.
    k
        Neighbours in the graph (10 in the reference code).
    seed
        Seeds the plugin's own generator, so that no other random stream moves.
    features
        Maps (model, inputs) to the latent features to regularise.
    """

    def __init__(
        self,
        rho: float = 0.01,
        classes: int = 0,
        batch: int = 0,
        k: int = 10,
        *,
        seed: int = 0,
        features: Callable[[nn.Module, Tensor], Tensor] = embedder_features,
    ) -> None:
        super().__init__()
        if rho < 0 or classes < 0 or batch < 0 or k < 1:
            raise ValueError(f"CaSpeR needs rho >= 0, classes >= 0, batch >= 0, k >= 1; got {rho}, {classes}, {batch}, {k}")
        self.rho, self.classes, self.batch, self.k, self.features = rho, classes, batch, k, features
        self.generator = torch.Generator().manual_seed(seed)
        self.last_loss = 0.0
        self._buffer: tuple[Tensor, Tensor] | None = None

    def before_training(self, strategy: SupervisedTemplate, **kwargs) -> None:
        if replay_storage(strategy) is None:
            raise CasperError(
                f"CaSpeR draws its graph batches from a replay buffer, and {type(strategy).__name__} has none: "
                "use Replay, ER_ACE or DER (or add a ReplayPlugin)"
            )

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs) -> None:
        """Snapshot the buffer once: it changes only between experiences (ER_ACE
        updates it just before this hook, Replay and DER just after training)."""
        self._buffer = None
        if self.rho > 0 and strategy.experience.current_experience > 0:
            stored = buffer_arrays(replay_storage(strategy).buffer)
            self._buffer = None if stored is None else (stored[0].to(strategy.device), stored[1].to(strategy.device))

    def before_backward(self, strategy: SupervisedTemplate, **kwargs) -> None:
        if self._buffer is None:
            return
        x, y = distinct_union(self._buffer, (strategy.mb_x, strategy.mb_y))
        classes = self.classes or experience_classes(strategy)
        rows, drawn = balanced_batch(y, classes, self.batch or strategy.train_mb_size, self.generator)
        if len(rows) <= self.k or len(rows) < drawn + 2:  # too few points for the graph or the eigenvalues
            return
        loss = casper_loss(self.features(strategy.model, x[rows]), drawn, self.k)
        self.last_loss = float(loss.detach())
        strategy.loss = strategy.loss + self.rho * loss
