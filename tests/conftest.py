"""Shared test helpers: random orthogonal maps and small labelled data."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    gaussian = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))


@pytest.fixture
def clustered() -> tuple[torch.Tensor, np.ndarray]:
    """300 points in 16-D: three well-separated Gaussian clusters and their labels."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=gen) * 6
    labels = np.repeat(np.arange(3), 100)
    points = centres[labels] + torch.randn(300, 16, generator=gen)
    return points, labels
