"""How a client packs its relative spaces for the wire, and how the server reads them back.

The run's ``payload`` is ``name[:argument]``, a codec of ``relatlas.registries.PAYLOADS``:
``fp32``, ``fp16``, or ``topk:K`` (``topk:K:P``), the K largest similarities of each
row raised to the power P (default 1) and re-normalised, as values and column
indices (``aggregation/sparse.py``). A registry entry maps the argument to a
``PayloadCodec``; a user's codec registers the same way and needs nothing else:
the client encodes with it, the server decodes with it and config validation asks it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from relatlas.aggregation.sparse import densify, topk_sparsify
from relatlas.registries import AGGREGATIONS, PAYLOADS
from relatlas.registry import refuse_argument, split_spec

VALUES, INDICES = ".values", ".indices"  # suffixes of a sparse subspace's two arrays
SPARSE_RANGE = (0.0, 1.0)  # a sparse row's values: clamped at zero, L2-normalised
INDEX_DTYPES = (np.int16, np.int32, np.int64)

# (array name, allowed value range) -> the reply's float32/float16 array, checked finite and within range
FloatReader = Callable[[str, tuple[float, float]], np.ndarray]


class PayloadCodec(Protocol):
    """Encodes a client's relative spaces; decodes and checks one of them on the server.
    Every error is a one-line ``ValueError``: the server drops the reply with its message."""

    def encode(self, spaces: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        """The arrays a client sends for its relative subspaces (``similarity -> [N, m]``)."""

    def decode(
        self,
        record: Mapping[str, Any],
        similarity: str,
        shape: tuple[int, int],
        value_range: tuple[float, float],
        floats: FloatReader,
    ) -> tuple[Tensor, int]:
        """One subspace of a reply's ``record`` (Flower arrays) as a dense ``shape`` float32
        tensor, and the bytes it took on the wire; ``floats`` reads a checked float array."""

    def check(self, similarities: tuple[str, ...], num_anchors: int) -> None:
        """Refuse a run whose aggregation needs ``similarities`` over ``num_anchors`` anchors if this codec cannot carry it."""


def payload_codec(spec: str) -> PayloadCodec:
    """The codec of a ``payload`` setting such as ``fp16`` or ``topk:8:2``."""
    name, argument = split_spec(spec)
    return PAYLOADS.get(name)(argument)


@dataclass(frozen=True)
class DenseCodec:
    """Every similarity as it is, in ``dtype``; either float width is read back."""

    dtype: type[np.floating]

    def encode(self, spaces: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        return {name: space.numpy().astype(self.dtype) for name, space in spaces.items()}

    def decode(
        self,
        record: Mapping[str, Any],
        similarity: str,
        shape: tuple[int, int],
        value_range: tuple[float, float],
        floats: FloatReader,
    ) -> tuple[Tensor, int]:
        array = floats(similarity, value_range)
        if array.shape != shape:
            raise ValueError(f"relative[{similarity!r}] has shape {array.shape}; expected {shape}")
        return torch.from_numpy(array.astype(np.float32)), array.nbytes

    def check(self, similarities: tuple[str, ...], num_anchors: int) -> None:
        return None


@dataclass(frozen=True)
class TopKCodec:
    """Each row's ``k`` largest cosines raised to ``power``, as values and column indices."""

    k: int
    power: float = 1.0

    def encode(self, spaces: Mapping[str, Tensor]) -> dict[str, np.ndarray]:
        arrays = {}
        for name, space in spaces.items():
            values, indices = topk_sparsify(space, self.k, self.power)
            index_dtype = np.int16 if space.shape[1] <= np.iinfo(np.int16).max else np.int32
            arrays[name + VALUES] = values.numpy().astype(np.float32)
            arrays[name + INDICES] = indices.numpy().astype(index_dtype)
        return arrays

    def decode(
        self,
        record: Mapping[str, Any],
        similarity: str,
        shape: tuple[int, int],
        value_range: tuple[float, float],
        floats: FloatReader,
    ) -> tuple[Tensor, int]:
        values = floats(similarity + VALUES, SPARSE_RANGE)
        key = similarity + INDICES
        indices = record[key].numpy() if key in record else None
        if indices is None or indices.dtype not in INDEX_DTYPES:
            raise ValueError(f"relative[{key!r}] must be an integer array beside relative[{similarity + VALUES!r}]")
        rows, k = values.shape if values.ndim == 2 else (-1, -1)
        if rows != shape[0] or not 1 <= k <= shape[1] or indices.shape != values.shape:
            raise ValueError(
                f"sparse relative[{similarity!r}] has shapes {values.shape}, {indices.shape}; expected ({shape[0]}, k)"
            )
        ordered = np.sort(indices, axis=1)
        if ordered[:, 0].min() < 0 or ordered[:, -1].max() >= shape[1] or (np.diff(ordered, axis=1) == 0).any():
            raise ValueError(f"relative[{key!r}] must hold distinct column indices in [0, {shape[1]})")
        dense = densify(torch.from_numpy(values.astype(np.float32)), torch.from_numpy(indices.astype(np.int64)), shape[1])
        return dense, values.nbytes + indices.nbytes

    def check(self, similarities: tuple[str, ...], num_anchors: int) -> None:
        if similarities != ("cosine",) or self.k > num_anchors:
            cosine_only = [name for name, method in AGGREGATIONS.items() if method.similarities == ("cosine",)]
            raise ValueError(
                f"payload topk:{self.k} keeps each row's largest cosines: it needs K <= anchors and an aggregation of "
                f"cosines only ({', '.join(cosine_only)})"
            )


def fp32(argument: str) -> DenseCodec:
    refuse_argument("payload", "fp32", argument)
    return DenseCodec(np.float32)


def fp16(argument: str) -> DenseCodec:
    refuse_argument("payload", "fp16", argument)
    return DenseCodec(np.float16)


def topk(argument: str) -> TopKCodec:
    """``K`` or ``K:P``, with K >= 1 and P > 0."""
    parts = argument.split(":")
    try:
        if len(parts) in (1, 2):
            k, power = int(parts[0]), float(parts[1]) if len(parts) == 2 else 1.0
            if k >= 1 and power > 0:
                return TopKCodec(k, power)
    except ValueError:
        pass
    raise ValueError(f"payload must be topk:K or topk:K:P with K >= 1 and P > 0; got topk:{argument}")


def add_gaussian_noise(spaces: dict[str, Tensor], sigma: float, seed: int) -> dict[str, Tensor]:
    """Each subspace plus seeded N(0, sigma^2) noise per entry (``--payload-noise``):
    blurs what leaves the client, at a measured accuracy cost; no formal privacy guarantee."""
    generator = torch.Generator().manual_seed(seed)
    return {name: space + sigma * torch.randn(space.shape, generator=generator) for name, space in spaces.items()}
