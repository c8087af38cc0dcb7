"""CaSpeR (Frascaroli et al.): a Laplacian spectral regulariser for rehearsal.

A class-balanced batch over ``p`` seen classes is drawn from the replay buffer;
its latent features form a symmetric k-NN graph whose normalised Laplacian
should have ``p`` near-zero eigenvalues and a large gap after them, i.e. ``p``
well-separated class clusters. Steps follow ALGORITHMS.md section 6.

Indexing (a documented choice): eigenvalues ascending ``l_1 <= l_2 <= ...``;
``indexing="paper"`` minimises ``sum_{j<=p} l_j - l_{p+1}`` (a graph with exactly
``p`` components has its first ``p`` eigenvalues at 0 and the gap right after);
``indexing="reference"`` is the reference code's one-higher form,
``sum_{j<=p+1} l_j - l_{p+2}``.

Gradients: the k-NN selection is hard, but each kept edge is weighted by a heat
kernel of its distance (``soft=True``), so the loss moves the features. With
``soft=False`` edges weigh 1 and the loss has no gradient, as a hard top-k has none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from benchmarks.rehearsal import buffer_arrays, replay_storage

Indexing = Literal["paper", "reference"]


def knn_adjacency(features: Tensor, k: int, *, soft: bool = True) -> Tensor:
    """Symmetric k-NN graph on squared Euclidean distances: i~j if either is among
    the other's ``k`` nearest. Soft edges weigh ``exp(-d2 / mean kept d2)``."""
    n = features.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k-NN graph needs 1 <= k < number of points; got k={k}, {n} points")
    d2 = torch.cdist(features, features).pow(2)
    d2 = (d2 + d2.T) / 2  # cdist is symmetric only up to rounding
    eye = torch.eye(n, dtype=torch.bool, device=features.device)
    neighbours = d2.detach().masked_fill(eye, float("inf")).topk(k, dim=1, largest=False).indices
    mask = torch.zeros(n, n, dtype=torch.bool, device=features.device).scatter_(1, neighbours, True)
    mask = mask | mask.T
    if not soft:
        return mask.to(features.dtype)
    scale = d2.detach()[mask].mean().clamp_min(1e-12)
    return torch.where(mask, torch.exp(-d2 / scale), torch.zeros_like(d2))


def normalized_laplacian(adjacency: Tensor) -> Tensor:
    """``I - D^-1/2 W D^-1/2``; isolated nodes get degree 1 to stay finite."""
    degree = adjacency.sum(dim=1).clamp_min(1e-12)
    inv_sqrt = degree.rsqrt()
    return (
        torch.eye(len(adjacency), dtype=adjacency.dtype, device=adjacency.device)
        - inv_sqrt[:, None] * adjacency * inv_sqrt[None, :]
    )


def spectral_gap_loss(eigenvalues: Tensor, p: int, indexing: Indexing = "paper") -> Tensor:
    """Sum of the first eigenvalues minus the next one (ascending order)."""
    if indexing not in ("paper", "reference"):
        raise ValueError(f"unknown indexing {indexing!r}; choose paper or reference")
    first = p if indexing == "paper" else p + 1
    if first >= len(eigenvalues):
        raise ValueError(f"{indexing} indexing with p={p} needs more than {first} eigenvalues, got {len(eigenvalues)}")
    return eigenvalues[:first].sum() - eigenvalues[first]


def casper_loss(features: Tensor, p: int, k: int, *, indexing: Indexing = "paper", soft: bool = True) -> Tensor:
    """The CaSpeR loss of a batch of latent features from ``p`` classes."""
    laplacian = normalized_laplacian(knn_adjacency(features.double(), k, soft=soft))
    return spectral_gap_loss(torch.linalg.eigvalsh(laplacian), p, indexing).to(features.dtype)


def balanced_batch(labels: Tensor, classes: int, per_class: int) -> tuple[Tensor, int]:
    """Row indices of up to ``per_class`` samples from each of ``classes`` random
    classes present in ``labels``; returns (rows, number of classes drawn)."""
    present = labels.unique()
    chosen = present[torch.randperm(len(present))[:classes]]
    rows = []
    for cls in chosen:
        members = (labels == cls).nonzero().squeeze(1)
        rows.append(members[torch.randperm(len(members))[:per_class]])
    return torch.cat(rows), len(chosen)


def embedder_features(model: nn.Module, x: Tensor) -> Tensor:
    """The latent space of the project's ``Classifier``: its embedder's output."""
    return model.embedder(x)


class CasperError(RuntimeError):
    """CaSpeR was attached to a strategy it cannot regularise."""


class CaSpeRPlugin(SupervisedPlugin):
    """Adds ``rho * casper_loss`` to the training loss from the second experience on.

    Parameters
    ----------
    rho
        Weight of the loss (0.01 in the reference code).
    classes
        ``p``: classes per buffer batch (fewer if fewer were seen).
    per_class
        Buffer samples drawn per class.
    k
        Neighbours in the graph (10 in the reference code).
    indexing, soft
        See the module docstring.
    features
        Maps (model, inputs) to the latent features to regularise.
    """

    def __init__(
        self,
        rho: float = 0.01,
        classes: int = 5,
        per_class: int = 16,
        k: int = 10,
        *,
        indexing: Indexing = "paper",
        soft: bool = True,
        features: Callable[[nn.Module, Tensor], Tensor] = embedder_features,
    ) -> None:
        super().__init__()
        if rho < 0 or classes < 1 or per_class < 2 or k < 1:
            raise ValueError(
                f"CaSpeR needs rho >= 0, classes >= 1, per-class >= 2, k >= 1; got {rho}, {classes}, {per_class}, {k}"
            )
        self.rho, self.classes, self.per_class, self.k = rho, classes, per_class, k
        self.indexing, self.soft, self.features = indexing, soft, features
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
        self._buffer = buffer_arrays(replay_storage(strategy).buffer) if strategy.experience.current_experience > 0 else None

    def before_backward(self, strategy: SupervisedTemplate, **kwargs) -> None:
        if self._buffer is None or self.rho == 0:
            return
        x, y = self._buffer
        rows, drawn = balanced_batch(y, self.classes, self.per_class)
        eigenvalues_needed = drawn + (1 if self.indexing == "paper" else 2)
        if drawn < 2 or len(rows) <= max(self.k, eigenvalues_needed):  # one class, or too few points for the graph
            return
        loss = casper_loss(
            self.features(strategy.model, x[rows].to(strategy.device)), drawn, self.k, indexing=self.indexing, soft=self.soft
        )
        self.last_loss = float(loss.detach())
        strategy.loss = strategy.loss + self.rho * loss
