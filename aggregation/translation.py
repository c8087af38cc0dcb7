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
  filter factors ``s / (s^2 + (ridge * s_max)^2)``; ``ridge`` (default
  ``RIDGE`` = 0.1) is the strength relative to the largest singular value, and
  0 is the plain minimum-norm least-squares solve. Any number of anchors works;
  with fewer than the target's dimension the result lies in their span.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from relatlas.aggregation.projection import relative_projection

RIDGE = 0.1  # Tikhonov strength of inverse relative projection, relative to the largest singular value


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
    """The orthogonal ``R`` minimising ``||source @ R - target||_F`` (rows paired)."""
    if source.shape != target.shape:
        raise ValueError(f"Procrustes needs paired rows of equal width; got {tuple(source.shape)} and {tuple(target.shape)}")
    u, _, vt = torch.linalg.svd(source.T.double() @ target.double())
    return (u @ vt).to(source.dtype)


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


def inverse_relative_projection(relative: Tensor, target_anchors: Tensor, *, ridge: float = RIDGE) -> Tensor:
    """Target-space points whose cosines to ``target_anchors`` [m, d] best match
    ``relative`` [N, m] (Tikhonov-regularised, see the module docstring), rescaled
    to the anchors' mean norm."""
    m = target_anchors.shape[0]
    if relative.shape[1] != m:
        raise ValueError(f"relative vectors have {relative.shape[1]} entries but there are {m} target anchors")
    u, s, vt = torch.linalg.svd(F.normalize(target_anchors.double(), dim=1), full_matrices=False)
    filters = s / (s**2 + (ridge * s[0]) ** 2)
    solution = (relative.double() @ u) * filters @ vt
    scale = target_anchors.double().norm(dim=1).mean()
    return (F.normalize(solution, dim=1) * scale).to(relative.dtype)


def translate_by_inversion(x: Tensor, source_anchors: Tensor, target_anchors: Tensor, *, ridge: float = RIDGE) -> Tensor:
    """Source points to the target space through the shared cosine relative space."""
    return inverse_relative_projection(relative_projection(x, source_anchors, "cosine"), target_anchors, ridge=ridge)
