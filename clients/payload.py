"""How a client packs its relative spaces for the wire: ``fp32``, ``fp16``, or
``topk:K`` (``topk:K:P``), the K largest similarities of each row raised to the
power P (default 1) and re-normalised, as values and column indices
(``aggregation/sparse.py``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from relatlas.aggregation.sparse import topk_sparsify
from torch import Tensor

VALUES, INDICES = ".values", ".indices"  # suffixes of a sparse subspace's two arrays
SPARSE_RANGE = (0.0, 1.0)  # a sparse row's values: clamped at zero, L2-normalised


@dataclass(frozen=True)
class PayloadFormat:
    kind: str  # fp32, fp16 or topk
    k: int = 0
    power: float = 1.0

    @classmethod
    def parse(cls, text: str) -> PayloadFormat:
        """``fp32``, ``fp16``, ``topk:K`` or ``topk:K:P``; a ValueError says what is wrong."""
        if text in ("fp32", "fp16"):
            return cls(text)
        parts = text.split(":")
        try:
            if parts[0] == "topk" and len(parts) in (2, 3):
                k, power = int(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0
                if k >= 1 and power > 0:
                    return cls("topk", k, power)
        except ValueError:
            pass
        raise ValueError(f"payload must be fp32, fp16, topk:K or topk:K:P with K >= 1 and P > 0; got {text!r}")


def add_gaussian_noise(spaces: dict[str, Tensor], sigma: float, seed: int) -> dict[str, Tensor]:
    """Each subspace plus seeded N(0, sigma^2) noise per entry (``--payload-noise``):
    blurs what leaves the client, at a measured accuracy cost; no formal privacy guarantee."""
    generator = torch.Generator().manual_seed(seed)
    return {name: space + sigma * torch.randn(space.shape, generator=generator) for name, space in spaces.items()}


def encode(spaces: dict[str, Tensor], payload: PayloadFormat) -> dict[str, np.ndarray]:
    """The arrays a client sends for its relative subspaces."""
    if payload.kind != "topk":
        dtype = np.float16 if payload.kind == "fp16" else np.float32
        return {name: space.numpy().astype(dtype) for name, space in spaces.items()}
    arrays = {}
    for name, space in spaces.items():
        values, indices = topk_sparsify(space, payload.k, payload.power)
        index_dtype = np.int16 if space.shape[1] <= np.iinfo(np.int16).max else np.int32
        arrays[name + VALUES] = values.numpy().astype(np.float32)
        arrays[name + INDICES] = indices.numpy().astype(index_dtype)
    return arrays
