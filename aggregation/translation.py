"""Latent translation between two clients' spaces through parallel anchors.

- Procrustes (Maiorca et al., NeurIPS 2023): standardise each space with its
  anchors' statistics, fit an orthogonal map on the anchors by SVD, translate,
  de-standardise. Spaces of different width are zero-padded to the larger one.
- Inverse relative projection (Maiorca et al. 2024): describe a sample by its
  cosines to the source anchors, then solve least squares against the target's
  unit anchors to return to the target space, rescaled to the target anchors'
  mean norm. The unit anchor matrix of a trained encoder is ill-conditioned
  (condition numbers from hundreds to tens of thousands on Fashion-MNIST and
  digits MLP spaces), so a plain solve blows the small mismatch between two
  encoders' relative vectors up along the weak directions. The solve is
  therefore a Tikhonov inverse: with the SVD ``U S V^T`` of the unit anchors,
  filter factors ``s / (s^2 + (ridge * s_max)^2)``; ``ridge`` is the strength
  relative to the largest singular value, and 0 is the plain minimum-norm
  least-squares solve. How much damping a pair of encoders needs depends on how
  far their relative vectors disagree, so by default the ridge is chosen from the
  anchor pairs themselves: each held-out group of pairs is translated through the
  others, and the ridge of the log grid ``RIDGES`` with the highest mean cosine
  to the held-out targets wins. (Generalised cross-validation of the solve was
  tried first: it scores the fit of the relative vectors, which the weak
  directions barely change, and chose ridges of 1e-4 to 0.006 that translate
  trained encoders badly.) A number fixes the ridge instead (0.1 was the fixed
  value before).
  Any number of anchors works; with fewer than the target's dimension the result
  lies in their span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from relatlas.aggregation.projection import relative_projection

# The candidate Tikhonov strengths of inverse relative projection, relative to the largest singular value,
# and how many interleaved groups of anchor pairs cross-validate them
RIDGES = tuple(float(r) for r in torch.logspace(-3, 0, 13, dtype=torch.float64))
FOLDS = 8


@dataclass(frozen=True)
class Standardizer:
    """Per-dimension mean and scale of a set of anchors."""

    mean: Tensor
    std: Tensor

    @classmethod
    def fit(cls, anchors: Tensor) -> Standardizer:
        return cls(anchors.mean(dim=0), anchors.std(dim=0).clamp_min(1e-8))

    def apply(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def invert(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean


def _pad(x: Tensor, width: int) -> Tensor:
    return F.pad(x, (0, width - x.shape[1]))


def procrustes(source: Tensor, target: Tensor) -> Tensor:
    """The orthogonal ``R`` minimising ``||source @ R - target||_F`` (rows paired).

    With fewer pairs than dimensions (standardised anchors span at most pairs - 1) the
    pairs fix ``R`` on the span of ``source^T target`` only; the singular vectors the SVD
    picks for the rest differ between LAPACK builds and CPUs. There ``R`` is the map
    between the two complements closest to the identity, so a run gives the same
    numbers on every machine, and a space translated into itself is left as it is."""
    if source.shape != target.shape:
        raise ValueError(f"Procrustes needs paired rows of equal width; got {tuple(source.shape)} and {tuple(target.shape)}")
    u, s, vt = torch.linalg.svd(source.T.double() @ target.double())
    rank = int((s > s[0] * s.numel() * torch.finfo(s.dtype).eps).sum()) if s.numel() and s[0] > 0 else 0
    fixed = u[:, :rank] @ vt[:rank]
    u_rest, v_rest = u[:, rank:], vt[rank:].T
    w, _, zt = torch.linalg.svd(u_rest.T @ v_rest)  # the orthogonal Q maximising trace(u_rest Q v_rest^T)
    return (fixed + u_rest @ (w @ zt) @ v_rest.T).to(source.dtype)


@dataclass(frozen=True)
class ProcrustesTranslation:
    """A fitted source -> target translation (see the module docstring)."""

    source: Standardizer
    target: Standardizer
    rotation: Tensor
    target_dim: int

    @classmethod
    def fit(cls, source_anchors: Tensor, target_anchors: Tensor) -> ProcrustesTranslation:
        if len(source_anchors) != len(target_anchors):
            raise ValueError(f"{len(source_anchors)} source anchors but {len(target_anchors)} target anchors; they must pair up")
        source, target = Standardizer.fit(source_anchors), Standardizer.fit(target_anchors)
        width = max(source_anchors.shape[1], target_anchors.shape[1])
        rotation = procrustes(_pad(source.apply(source_anchors), width), _pad(target.apply(target_anchors), width))
        return cls(source, target, rotation, target_anchors.shape[1])

    def __call__(self, x: Tensor) -> Tensor:
        width = self.rotation.shape[0]
        return self.target.invert((_pad(self.source.apply(x), width) @ self.rotation)[:, : self.target_dim])


def translate_by_procrustes(x: Tensor, source_anchors: Tensor, target_anchors: Tensor) -> Tensor:
    """Source points to the target space by the Procrustes translation fitted on the anchor pairs."""
    return ProcrustesTranslation.fit(source_anchors, target_anchors)(x)


def _unit_svd(anchors: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return torch.linalg.svd(F.normalize(anchors.double(), dim=1), full_matrices=False)


def _tikhonov_filters(s: Tensor, ridge: float | Tensor) -> Tensor:
    """The Tikhonov inverse's filter factors for singular values ``s`` (largest first)."""
    return s / (s**2 + (ridge * s[0]) ** 2)


def held_out_cosines(
    source_anchors: Tensor, target_anchors: Tensor, ridges: Sequence[float] = RIDGES, folds: int = FOLDS
) -> Tensor:
    """Per ridge, the mean cosine between each target anchor and its source partner
    translated through the other anchor pairs: the anchors fall into ``folds``
    interleaved groups, each held out once while the rest do the translating."""
    k = len(source_anchors)
    scores = torch.zeros(len(ridges), dtype=torch.float64)
    lam = torch.as_tensor(ridges, dtype=torch.float64)[:, None]  # [R, 1]
    for fold in range(min(folds, k)):
        held = torch.zeros(k, dtype=torch.bool)
        held[fold::folds] = True
        u, s, vt = _unit_svd(target_anchors[~held])
        relative = relative_projection(source_anchors[held], source_anchors[~held], "cosine").double()
        filters = _tikhonov_filters(s, lam)  # [R, r]
        moved = ((relative @ u)[None] * filters[:, None]) @ vt  # [R, held, d]
        scores += F.cosine_similarity(moved, target_anchors[held].double()[None], dim=-1).sum(dim=1)
    return scores / k


def cross_validated_ridge(source_anchors: Tensor, target_anchors: Tensor, ridges: Sequence[float] = RIDGES) -> float:
    """The ridge of ``ridges`` that translates held-out anchors best (the smallest
    on a tie); with one pair every ridge gives the same direction."""
    if len(source_anchors) < 2:
        return float(ridges[0])
    return float(ridges[int(held_out_cosines(source_anchors, target_anchors, ridges).argmax())])


def inverse_relative_projection(relative: Tensor, target_anchors: Tensor, *, ridge: float) -> Tensor:
    """Target-space points whose cosines to ``target_anchors`` [m, d] best match
    ``relative`` [N, m] (Tikhonov-regularised, see the module docstring), rescaled
    to the anchors' mean norm."""
    m = target_anchors.shape[0]
    if relative.shape[1] != m:
        raise ValueError(f"relative vectors have {relative.shape[1]} entries but there are {m} target anchors")
    if not ridge >= 0:
        raise ValueError(f"ridge must be a number >= 0, got {ridge}")
    u, s, vt = _unit_svd(target_anchors)
    solution = (relative.double() @ u) * _tikhonov_filters(s, ridge) @ vt
    scale = target_anchors.double().norm(dim=1).mean()
    return (F.normalize(solution, dim=1) * scale).to(relative.dtype)


def translate_by_inversion(x: Tensor, source_anchors: Tensor, target_anchors: Tensor, *, ridge: float | None = None) -> Tensor:
    """Source points to the target space through the shared cosine relative space;
    ``ridge`` None chooses it from the anchors (``cross_validated_ridge``)."""
    if len(source_anchors) != len(target_anchors):
        raise ValueError(f"{len(source_anchors)} source anchors but {len(target_anchors)} target anchors; they must pair up")
    chosen = cross_validated_ridge(source_anchors, target_anchors) if ridge is None else ridge
    return inverse_relative_projection(relative_projection(x, source_anchors, "cosine"), target_anchors, ridge=chosen)
