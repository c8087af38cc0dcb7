"""Inputs that are not float arrays held whole: the source contract.

A dataset's inputs (``Dataset.x_train``/``x_test``) are any indexable of inputs
with ``len()``: a NumPy array (today's built-ins, held in memory), an object
array of strings (a text table), or ``LazyInputs``, rows of a source decoded one
at a time (an image folder, a user's torchvision-style dataset), so a dataset
larger than memory streams. Labels are always an int64 array, known up front
(every split is planned on them). Indexing a ``LazyInputs`` with rows gives
another one, so ``x_train[rows]`` reads the same for every kind; NumPy reads one
whole (``np.asarray``) only where a few are sent: the anchors and the evaluation pool.

Training and projection read non-array inputs through a ``DataLoader``
(``pairs_loader``, ``inputs_loader``); an input is a float32 ``[C, H, W]``/``[d]``
array or a ``str`` (a batch of strings reaches the encoder as a list).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from relatlas.encoder_spec import TENSOR, TEXT

OPTION = re.compile(r"^([A-Za-z_]\w*)=(.*)$")


class DatasetError(ValueError):
    """A dataset that cannot be loaded; the message says how to get it."""


@dataclass(frozen=True, eq=False)
class LazyInputs:
    """Rows ``rows`` of ``source`` (``source[i]``: one input, decoded when asked for)."""

    source: Sequence[Any]
    rows: np.ndarray

    @classmethod
    def of(cls, source: Sequence[Any]) -> LazyInputs:
        return cls(source, np.arange(len(source)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)):
            return self.source[int(self.rows[key])]
        return LazyInputs(self.source, self.rows[key])

    @property
    def shape(self) -> tuple[int, ...]:
        """``[N, *input]``: the shape of the first input, as an array's would be."""
        return (len(self), *np.shape(self[0]))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All rows decoded and stacked: for the few inputs sent over the wire."""
        return np.asarray(np.stack([self[i] for i in range(len(self))]), dtype=dtype)


def is_array(inputs: Any) -> bool:
    """Whether ``inputs`` are numbers held whole (the fast path: no ``DataLoader``)."""
    return isinstance(inputs, torch.Tensor) or (isinstance(inputs, np.ndarray) and inputs.dtype.kind in "biuf")


def input_kind(inputs: Sequence[Any]) -> str:
    """``TEXT`` if the inputs are strings, else ``TENSOR``."""
    if isinstance(inputs, np.ndarray) and inputs.dtype.kind in "biuf":
        return TENSOR
    return TEXT if isinstance(inputs[0], str) else TENSOR


def pil_pixels(image: Any) -> np.ndarray:
    """A PIL image as float32 ``[C, H, W]`` in [0, 1] (8-bit bands)."""
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def text_array(texts: Sequence[Any]) -> np.ndarray:
    """Texts as a 1-D object array of ``str``: indexed by rows like any inputs, each text its own size in memory."""
    array = np.empty(len(texts), dtype=object)
    array[:] = [str(text) for text in texts]
    return array


def wire_array(inputs: Sequence[Any]) -> np.ndarray:
    """``inputs`` as one contiguous array to send: numbers as they are, strings as
    fixed-width unicode (Flower's arrays carry no pickled objects)."""
    array = np.asarray(inputs)
    return np.ascontiguousarray(array.astype(str) if array.dtype.kind == "O" else array)


def first_batch(inputs: Sequence[Any], size: int) -> torch.Tensor | list[str]:
    """The first ``size`` inputs as an encoder takes them: a float32 tensor (a copy) or a list of strings."""
    items = [inputs[i] for i in range(min(size, len(inputs)))]
    if items and isinstance(items[0], str):
        return [str(item) for item in items]
    return torch.tensor(np.stack(items), dtype=torch.float32)


class _Pairs(TorchDataset):
    def __init__(self, x: Sequence[Any], y: np.ndarray) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        return _item(self.x[i]), int(self.y[i])


class _Inputs(TorchDataset):
    def __init__(self, x: Sequence[Any]) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Any:
        return _item(self.x[i])


def _item(value: Any) -> Any:
    """One input as ``default_collate`` stacks it: float32 arrays, plain strings."""
    return str(value) if isinstance(value, str) else np.asarray(value, dtype=np.float32)


def pairs_loader(x: Sequence[Any], y: np.ndarray, batches: Iterator[list[int]] | Any, workers: int) -> DataLoader:
    """``(inputs, labels)`` batches of the rows ``batches`` yields (a batch sampler), read by ``workers`` processes."""
    return DataLoader(_Pairs(x, y), batch_sampler=batches, num_workers=workers)


def inputs_loader(x: Sequence[Any], batch_size: int, workers: int) -> DataLoader:
    """The inputs in order, ``batch_size`` at a time."""
    return DataLoader(_Inputs(x), batch_size=batch_size, num_workers=workers)


def loader_workers(num_cpus: float) -> int:
    """``DataLoader`` workers for a client given ``num_cpus``: none (read in the training process) where it has one."""
    return 0 if num_cpus <= 1 else int(num_cpus)


def path_and_options(kind: str, argument: str, defaults: dict[str, str]) -> tuple[str, dict[str, str]]:
    """``"PATH:key=value:key=value"`` -> ``(PATH, options)``, the grammar of encoder specs;
    ``defaults`` names the allowed keys. A one-line ``DatasetError`` for an unknown or repeated key."""
    parts = argument.split(":")
    given: dict[str, str] = {}
    while len(parts) > 1 and OPTION.match(parts[-1]):
        key, value = OPTION.match(parts.pop()).groups()  # type: ignore[union-attr]
        if key not in defaults:
            raise DatasetError(f"{kind}:{argument}: unknown option {key!r}; options: {', '.join(defaults) or 'none'}")
        if key in given:
            raise DatasetError(f"{kind}:{argument}: option {key!r} given twice")
        given[key] = value
    path = ":".join(parts)
    if not path:
        raise DatasetError(f"dataset {kind} needs a path: {kind}:PATH" + "".join(f"[:{key}=...]" for key in defaults))
    return path, defaults | given


def class_labels(names: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names in sorted order (numerically if all are integers) and each name's label 0..C-1."""
    unique = sorted(set(names))
    if all(re.fullmatch(r"-?\d+", name) for name in unique):
        unique.sort(key=int)
    index = {name: label for label, name in enumerate(unique)}
    return tuple(unique), np.array([index[n] for n in names], dtype=np.int64)
