"""A torchvision-style dataset object as a relatlas ``Dataset``, read lazily.

A user's loader wraps any object with ``len()`` whose item ``i`` is ``(input, label)``
(``torch.utils.data.Dataset``, torchvision's datasets with their ``transform``)::

    from relatlas.benchmarks.torch_source import torch_dataset
    from relatlas.registries import DATASETS

    @DATASETS.register("xrays")
    def xrays(argument, *, root, seed):
        return torch_dataset("xrays", ImageFolder(argument, transform=ToTensor()), seed=seed)

Inputs (a tensor, a PIL image, an array, or a string) are read when a batch needs
them, as float32 arrays (PIL images scaled to [0, 1], ``[C, H, W]``) or strings.
Labels must be known up front: the object's ``targets`` (torchvision's datasets
keep them) or, failing that, every item's label read once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, stratified_split
from relatlas.benchmarks.sources import DatasetError, LazyInputs, pil_pixels


@dataclass(frozen=True)
class FirstOfPairs:
    """Input ``i`` of a dataset of ``(input, label)`` pairs, as relatlas takes it."""

    pairs: Sequence[Any]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> np.ndarray | str:
        return as_input(self.pairs[i][0])


def as_input(value: Any) -> np.ndarray | str:
    """A string as it is; a tensor or array as float32; a PIL image as float32 ``[C, H, W]`` in [0, 1]."""
    if isinstance(value, str):
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float32, copy=False)
    if hasattr(value, "getbands"):  # a PIL image
        return pil_pixels(value)
    return np.asarray(value, dtype=np.float32)


def torch_dataset(
    name: str, train: Sequence[Any], test: Sequence[Any] | None = None, *, seed: int, classes: Sequence[str] | None = None
) -> Dataset:
    """``train`` (and ``test``, else a seeded stratified split of ``train``) as a ``Dataset``
    whose inputs are read lazily; ``classes`` names the labels (default: the object's ``classes``)."""
    names = tuple(str(c) for c in (classes if classes is not None else getattr(train, "classes", ())))
    train_labels = _labels(name, train)
    if test is None:
        rows, held = stratified_split(train_labels, TEST_FRACTION, seed)
        inputs = LazyInputs.of(FirstOfPairs(train))
        return Dataset(name, inputs[rows], train_labels[rows], inputs[held], train_labels[held], names)
    return Dataset(
        name, LazyInputs.of(FirstOfPairs(train)), train_labels, LazyInputs.of(FirstOfPairs(test)), _labels(name, test), names
    )


def _labels(name: str, pairs: Sequence[Any]) -> np.ndarray:
    """The labels of ``pairs``: its ``targets``, else read item by item."""
    targets = getattr(pairs, "targets", None)
    try:
        values = list(targets) if targets is not None else [pairs[i][1] for i in range(len(pairs))]
        return np.asarray([int(v) for v in values], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"dataset {name!r}: labels must be integers 0..C-1 ({err})") from None
