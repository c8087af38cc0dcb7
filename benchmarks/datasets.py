"""Offline datasets: arrays in memory, nothing downloads. The built-in loaders
are in ``benchmarks/builtin_datasets.py``; this module holds what every loader's
result goes through.

A dataset is an entry of ``relatlas.registries.DATASETS``: a function
``(argument: str, *, root: str | None, seed: int) -> Dataset``, called with the
text after the name's first ``:`` (``npz:PATH`` passes PATH; empty if none), the
``--data-root`` (or None) and the run's seed, which fixes a train/test split
where the source has none (``stratified_split``). It returns a ``Dataset``:
``x_*`` ``[N, ...]`` numbers, ``y_*`` integer labels 0..C-1 with every class in
training; it raises ``DatasetError`` with a one-line hint when it cannot load.
``load_dataset`` checks every loader's result the same way (``checked_dataset``),
hands on inputs as float32 (uint8/uint16 images scaled to [0, 1]) and labels as
int64, and takes ``[N, H, W]`` inputs as one-channel images ``[N, 1, H, W]``.
A user's dataset registers the same way::

    @DATASETS.register("mine")
    def mine(argument, *, root, seed): ...
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from relatlas.benchmarks.sources import DatasetError, LazyInputs, input_kind, text_array
from relatlas.registries import DATASETS
from relatlas.registry import RegistryError, split_spec

TEST_FRACTION = 0.3
INTEGER_IMAGES = (np.dtype(np.uint8), np.dtype(np.uint16))  # scaled by their largest value
log = logging.getLogger("relatlas")


@dataclass(frozen=True)
class Dataset:
    """Train and test inputs and labels; from ``load_dataset``: array inputs float32 (integer images
    scaled to [0, 1]), labels int64. Inputs may also be strings or ``LazyInputs`` (``benchmarks/sources.py``);
    ``classes`` names label 0..C-1 where the source names them (a folder, a label column)."""

    name: str
    x_train: np.ndarray | LazyInputs | DroppedInputs
    y_train: np.ndarray
    x_test: np.ndarray | LazyInputs | DroppedInputs
    y_test: np.ndarray
    classes: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def without_inputs(self) -> Dataset:
        """The labels, names and input shape, the inputs dropped (``DroppedInputs``): what a server keeps
        once it has read the few inputs it sends, so that its memory does not hold the whole dataset."""
        return dataclasses.replace(self, x_train=DroppedInputs(self.x_train.shape), x_test=DroppedInputs(self.x_test.shape))


@dataclass(frozen=True)
class DroppedInputs:
    """Where a dataset's inputs were (``Dataset.without_inputs``): their shape, and no row to read."""

    shape: tuple[int, ...]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> Any:
        raise LookupError("the inputs of this dataset were dropped once the server had read what it sends (without_inputs)")


def first_few(values: Sequence[Any], shown: int = 5) -> str:
    """``values`` for an error line: the first ``shown``, then how many more."""
    head = ", ".join(str(v) for v in values[:shown])
    return head if len(values) <= shown else f"{head} and {len(values) - shown:,} more"


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of indices into (train, test)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        cut = int(round(len(idx) * test_fraction))
        test.append(idx[:cut])
        train.append(idx[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def check_pair(name: str, x_key: str, y_key: str, x: np.ndarray, y: np.ndarray) -> None:
    """Refuse inputs and labels that do not pair up: [N, ...] finite numbers, [N] integer labels, N > 0."""
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise DatasetError(f"dataset {name!r}: {x_key} must be [N, ...] and {y_key} [N] with N > 0, got {x.shape} and {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DatasetError(f"dataset {name!r}: {y_key} must hold non-negative integers, got dtype {y.dtype}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating) or not np.isfinite(x).all():
        raise DatasetError(f"dataset {name!r}: {x_key} must hold finite real numbers, got dtype {x.dtype}")


def _check_classes(name: str, y_train: np.ndarray, y_test: np.ndarray) -> None:
    """Refuse labels that are not 0..C-1, each present in training: a gap would be
    an extra class that no client holds and every split would miscount."""
    present = np.unique(y_train)
    if present[-1] != len(present) - 1 or y_test.max() > present[-1]:
        raise DatasetError(
            f"dataset {name!r}: labels must be 0..C-1 with every class in y_train; found {len(present)} classes "
            f"({first_few(present.tolist())}), y_test up to {y_test.max()}: "
            "renumber them (relatlas does not remap labels)"
        )


def _scaled(name: str, x_train: np.ndarray, x_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs as float32: unsigned 8- and 16-bit integers (images as stored) divided by
    their dtype's largest value, to [0, 1], which every encoder's defaults assume;
    other integer types refused (their range says nothing of the data's); floats as given."""
    if not np.issubdtype(x_train.dtype, np.integer):
        return x_train.astype(np.float32, copy=False), x_test.astype(np.float32, copy=False)
    if x_train.dtype not in INTEGER_IMAGES or x_test.dtype != x_train.dtype:
        raise DatasetError(
            f"dataset {name!r}: integer inputs must be uint8 or uint16 images (scaled to [0, 1]), got {x_train.dtype} "
            f"and {x_test.dtype}: store them as one of those, or as floats in the scale to train on"
        )
    top = float(np.iinfo(x_train.dtype).max)
    log.info("dataset %r: %s inputs scaled to [0, 1] (divided by %d)", name, x_train.dtype, top)
    return unit_scaled(x_train, top), unit_scaled(x_test, top)


def unit_scaled(images: np.ndarray, top: float) -> np.ndarray:
    """``images / top`` as float32, divided in float32 in place: the same numbers as a float64
    division rounded to float32 for every uint8 and uint16 value (a test checks), without the
    float64 copy, twice the float32 result's size (376 MB for Fashion-MNIST's training set)."""
    scaled = images.astype(np.float32)
    scaled /= np.float32(top)
    return scaled


def checked_dataset(name: str, data: Dataset) -> Dataset:
    """``data`` checked as every loader's result is, inputs float32 (``_scaled``) and
    [N, H, W] images given a channel axis; malformed data is refused in one line naming ``name``."""
    if not (_held_whole(data.x_train) and _held_whole(data.x_test)):
        return _checked_source(name, data)
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in (data.x_train, data.y_train, data.x_test, data.y_test))
    check_pair(name, "x_train", "y_train", x_train, y_train)
    check_pair(name, "x_test", "y_test", x_test, y_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(f"dataset {name!r}: x_test samples have shape {x_test.shape[1:]}, x_train samples {x_train.shape[1:]}")
    _check_classes(name, y_train, y_test)
    x_train, x_test = _scaled(name, x_train, x_test)
    if x_train.ndim == 3:  # [N, H, W]: one-channel images, as the image encoders take them
        x_train, x_test = x_train[:, None], x_test[:, None]
    return dataclasses.replace(
        data, x_train=x_train, y_train=y_train.astype(np.int64, copy=False), x_test=x_test,
        y_test=y_test.astype(np.int64, copy=False),
    )  # fmt: skip


def _held_whole(inputs: object) -> bool:
    """Inputs checked and converted as arrays are: anything but ``LazyInputs`` and a 1-D array of strings (texts)."""
    if isinstance(inputs, LazyInputs):
        return False
    head = np.asarray(inputs[:1])  # type: ignore[index]
    return head.ndim != 1 or not len(head) or not isinstance(head[0], str)


def _checked_source(name: str, data: Dataset) -> Dataset:
    """``checked_dataset`` for strings and ``LazyInputs``: labels as for arrays, inputs as many as
    labels, train and test inputs of one kind and shape (one of each decoded; the rest as read)."""
    y_train, y_test = np.asarray(data.y_train), np.asarray(data.y_test)
    for x_key, y_key, x, y in (("x_train", "y_train", data.x_train, y_train), ("x_test", "y_test", data.x_test, y_test)):
        if y.ndim != 1 or len(x) != len(y) or len(y) == 0:
            raise DatasetError(f"dataset {name!r}: {x_key} and {y_key} must hold N > 0 samples each, got {len(x)} and {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise DatasetError(f"dataset {name!r}: {y_key} must hold non-negative integers, got dtype {y.dtype}")
    kinds = input_kind(data.x_train), input_kind(data.x_test)
    shapes = np.shape(data.x_train[0]), np.shape(data.x_test[0])
    if kinds[0] != kinds[1] or shapes[0] != shapes[1]:
        raise DatasetError(
            f"dataset {name!r}: x_test inputs are {kinds[1]} of shape {shapes[1]}, x_train's {kinds[0]} of shape {shapes[0]}"
        )
    _check_classes(name, y_train, y_test)
    x_train, x_test = (x if isinstance(x, LazyInputs) else text_array(x) for x in (data.x_train, data.x_test))
    return dataclasses.replace(
        data, x_train=x_train, y_train=y_train.astype(np.int64, copy=False), x_test=x_test,
        y_test=y_test.astype(np.int64, copy=False),
    )  # fmt: skip


def read_dataset(spec: str, root: str | None = None, seed: int = 0) -> Dataset:
    """Read the registered dataset ``name[:argument]``; ``seed`` fixes the train/test split where the source has none.

    Every loader's result passes ``checked_dataset``: refused in one line if malformed,
    integer images scaled to [0, 1], [N, H, W] images given their channel axis.
    Read afresh at each call, so a caller that keeps a part frees the rest (the server's
    ``RunSetup.prepare``); the arrays are read-only, as ``load_dataset`` shares them.
    """
    name, argument = split_spec(spec)
    try:
        loader = DATASETS.get(name)
    except RegistryError as err:
        raise DatasetError(str(err)) from None
    dataset = loader(argument, root=root, seed=seed)
    if not isinstance(dataset, Dataset):
        raise DatasetError(f"dataset {name!r} returned {type(dataset).__name__}; a dataset loader must return a Dataset")
    dataset = checked_dataset(spec, dataset)
    for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
        if isinstance(array, np.ndarray):
            array.setflags(write=False)
    return dataset


@lru_cache(maxsize=4)
def load_dataset(spec: str, root: str | None = None, seed: int = 0) -> Dataset:
    """``read_dataset``, cached per process: read-only arrays shared by the clients a worker hosts."""
    return read_dataset(spec, root, seed)
