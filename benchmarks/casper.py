"""CaSpeR (Frascaroli et al.): a Laplacian spectral regulariser for rehearsal,
as the reference code (Mammoth) computes it. Steps follow ALGORITHMS.md section 6.

Sampler: graph batches come from a class-balanced reservoir of the plugin's own
(``balanced_reservoir.py``, Mammoth's "balancoir"), fed with every training batch.

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
from collections.abc import Callable, Mapping, Sequence

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from relatlas.benchmarks.balanced_reservoir import BalancedReservoir
from relatlas.benchmarks.rehearsal import replay_storage

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


def embedder_features(model: nn.Module, x: Tensor) -> Tensor:
    """The latent space of the project's ``Classifier``: its embedder's output."""
    return model.embedder(x)


def row_keys(inputs: Tensor) -> list[int]:
    """One hash per input, equal for equal inputs: tells an experience's own
    samples from the buffer samples Replay mixes into its minibatches."""
    return [hash(row.tobytes()) for row in inputs.detach().flatten(1).cpu().numpy()]


class CasperError(RuntimeError):
    """CaSpeR was attached to a strategy it cannot regularise."""


class CaSpeRPlugin(SupervisedPlugin):
    """Adds ``rho * casper_loss`` to the training loss from the second experience on.

    As the reference (Mammoth's ``CasperModel``) does, the plugin keeps a
    class-balanced reservoir (``BalancedReservoir``) as large as the strategy's
    replay buffer, offers it every training batch's samples of the experience being
    trained (not the buffer samples Replay mixes in), from the first experience on,
    and draws each graph batch from it: ``batch`` samples balanced over ``p``
    classes, or the whole reservoir when ``batch`` equals its capacity. Two
    differences: Mammoth's strategies rehearse from that same buffer, while
    Avalanche's keep their own beside it; and here a batch goes in before the
    draw (ALGORITHMS.md section 6), so the classes being learned are in the graph
    from the first step, where the reference inserts it after its update.

    Parameters
    ----------
    rho
        Weight of the loss (0.01 in the reference code); 0 keeps, draws and computes nothing.
    classes
        ``p``, the classes per task of the stream: one number for every
        experience, or one per experience (a stream whose experiences differ). The
        loss uses it even when fewer classes could be drawn, as the reference does.
    batch
        Samples per graph batch; 0: the strategy's training minibatch size.
    k
        Neighbours in the graph (10 in the reference code).
    seed
        Seeds the plugin's own generator, used for every insertion and draw, so
        that switching CaSpeR on moves no other random stream.
    features
        Maps (model, inputs) to the latent features to regularise.
    augment
        The transform training batches get, applied to each graph batch as the
        reference augments its buffer draws. relatlas's streams do not augment,
        hence none by default.
    """

    def __init__(
        self,
        rho: float = 0.01,
        classes: int | Sequence[int] = (),
        batch: int = 0,
        k: int = 10,
        *,
        seed: int = 0,
        features: Callable[[nn.Module, Tensor], Tensor] = embedder_features,
        augment: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        per_experience = [classes] if isinstance(classes, int) else list(classes)
        if rho < 0 or batch < 0 or k < 1 or not per_experience or min(per_experience) < 1:
            raise ValueError(
                f"CaSpeR needs rho >= 0, classes >= 1 (or one per experience), batch >= 0, k >= 1; "
                f"got {rho}, {classes}, {batch}, {k}"
            )
        self.rho, self.classes, self.batch, self.k = rho, classes, batch, k
        self.features, self.augment = features, augment
        self.generator = torch.Generator().manual_seed(seed)
        self.last_loss = 0.0
        self.reservoir: BalancedReservoir | None = None
        self._experience_keys: set[int] = set()

    def classes_for(self, experience: int) -> int:
        """``p`` for the experience with index ``experience``."""
        if isinstance(self.classes, int):
            return self.classes
        if experience >= len(self.classes):
            raise CasperError(f"CaSpeR was given classes for {len(self.classes)} experiences; experience {experience} has none")
        return self.classes[experience]

    def memory_state(self) -> dict[str, Tensor]:
        """The reservoir as plain tensors, saved beside the strategy's buffer between rounds."""
        return {} if self.reservoir is None else self.reservoir.state()

    def load_memory_state(self, state: Mapping[str, Tensor]) -> None:
        self.reservoir = BalancedReservoir.from_state(state)

    def before_training(self, strategy: SupervisedTemplate, **kwargs) -> None:
        storage = replay_storage(strategy)
        if storage is None:
            raise CasperError(
                f"CaSpeR is a regulariser for rehearsal, its memory as large as the replay buffer, and "
                f"{type(strategy).__name__} has none: use Replay, ER_ACE or DER (or add a ReplayPlugin)"
            )
        if self.reservoir is None:
            self.reservoir = BalancedReservoir(storage.max_size)
        if self.reservoir.inputs is not None:
            self.reservoir.inputs = self.reservoir.inputs.to(strategy.device)

    def before_training_exp(self, strategy: SupervisedTemplate, **kwargs) -> None:
        """Check the graph batch can hold the loss, and learn which inputs are the experience's own."""
        if self.rho == 0:
            return
        p, size = self.classes_for(strategy.experience.current_experience), self._size(strategy)
        if not self.k < size >= p + 2:
            raise CasperError(f"a CaSpeR graph batch of {size} needs more than k={self.k} samples and at least p + 2 = {p + 2}")
        dataset = strategy.experience.dataset
        self._experience_keys = set(row_keys(torch.stack([dataset[i][0] for i in range(len(dataset))])))

    def before_training_iteration(self, strategy: SupervisedTemplate, **kwargs) -> None:
        """Offer the reservoir this minibatch's samples of the experience (before the draw)."""
        if self.rho == 0:
            return
        own = torch.tensor([key in self._experience_keys for key in row_keys(strategy.mb_x)], device=strategy.mb_x.device)
        self.reservoir.add(strategy.mb_x[own], strategy.mb_y[own], self.generator)

    def before_backward(self, strategy: SupervisedTemplate, **kwargs) -> None:
        if self.rho == 0 or strategy.experience.current_experience == 0:
            return
        p, size = self.classes_for(strategy.experience.current_experience), self._size(strategy)
        reservoir = self.reservoir
        if size == reservoir.capacity:
            rows = torch.arange(len(reservoir))
        else:
            rows = reservoir.draw(size, p, self.generator)
        if len(rows) <= self.k or len(rows) < p + 2:  # too few held yet for the graph or the eigenvalues
            return
        inputs = reservoir.inputs[rows.to(reservoir.inputs.device)]
        if self.augment is not None:
            inputs = self.augment(inputs)
        loss = casper_loss(self.features(strategy.model, inputs), p, self.k)
        self.last_loss = float(loss.detach())
        strategy.loss = strategy.loss + self.rho * loss

    def _size(self, strategy: SupervisedTemplate) -> int:
        return self.batch or strategy.train_mb_size
