"""Avalanche streams built from the project's datasets and splits.

A stream is a ``Stream`` entry of ``relatlas.registries.STREAMS``: the classes of
each experience (``class_schedule``), and which rows of a labelled set each
experience holds (``experience_rows``). Class-incremental: experience t holds the
classes of an explicit list, the same for every client; every class lands in
exactly one experience, even when the class count does not divide. New-instances:
every class in every experience, the samples dealt into T parts.

Samples are wrapped in ``DatasetRows``, which pickles as the dataset's name and
row indices: a client's replay buffer can then be kept in ``context.state``
without copying images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from relatlas.benchmarks.datasets import Dataset, load_dataset
from relatlas.benchmarks.splits import SplitError
from relatlas.registries import STREAMS
from relatlas.registry import RegistryError

if TYPE_CHECKING:  # Avalanche is imported where a stream is built: the server's schedules need none of it
    from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
    from avalanche.benchmarks.utils.classification_dataset import TaskAwareSupervisedClassificationDataset

Schedule = tuple[tuple[int, ...], ...]  # the classes of each experience


@dataclass(frozen=True)
class Stream:
    """``schedule(num_classes, experiences, seed) -> Schedule``;
    ``rows(labels, schedule, seed) -> row indices into labels of each experience``."""

    schedule: Callable[[int, int, int], Schedule]
    rows: Callable[[np.ndarray, Sequence[Sequence[int]], int], tuple[np.ndarray, ...]]


def _stream(name: str) -> Stream:
    try:
        return STREAMS.get(name)
    except RegistryError as err:
        raise SplitError(str(err)) from None


def class_schedule(num_classes: int, experiences: int, stream: str, seed: int) -> Schedule:
    """The classes of each experience of the named stream."""
    return _stream(stream).schedule(num_classes, experiences, seed)


def experience_rows(labels: np.ndarray, schedule: Sequence[Sequence[int]], stream: str, seed: int) -> tuple[np.ndarray, ...]:
    """Row indices into ``labels`` of each experience of the named stream."""
    return _stream(stream).rows(np.asarray(labels), schedule, seed)


def _class_order_cut(num_classes: int, experiences: int, seed: int) -> Schedule:
    """A seeded class order cut into ``experiences`` lists whose sizes differ by at most one."""
    if not 1 <= experiences <= num_classes:
        raise SplitError(
            f"a class-incremental stream of {num_classes} classes has 1 to {num_classes} experiences, got {experiences}"
        )
    order = np.random.default_rng(seed).permutation(num_classes)
    return tuple(tuple(sorted(int(c) for c in part)) for part in np.array_split(order, experiences))


def _rows_by_class(labels: np.ndarray, schedule: Sequence[Sequence[int]], seed: int) -> tuple[np.ndarray, ...]:
    return tuple(np.flatnonzero(np.isin(labels, classes)) for classes in schedule)


def _every_class(num_classes: int, experiences: int, seed: int) -> Schedule:
    if experiences < 1:
        raise SplitError(f"need at least one experience, got {experiences}")
    return tuple(tuple(range(num_classes)) for _ in range(experiences))


def _rows_dealt(labels: np.ndarray, schedule: Sequence[Sequence[int]], seed: int) -> tuple[np.ndarray, ...]:
    """A seeded deal of all rows into ``len(schedule)`` near-equal parts."""
    parts = np.array_split(np.random.default_rng(seed).permutation(len(labels)), len(schedule))
    return tuple(np.sort(part) for part in parts)


# The built-ins, registered by path in ``relatlas.registries``.
class_incremental = Stream(_class_order_cut, _rows_by_class)
new_instances = Stream(_every_class, _rows_dealt)


@dataclass(frozen=True)
class DatasetRef:
    """How to load a project dataset again, in any process."""

    name: str
    root: str
    seed: int

    def load(self) -> Dataset:
        return load_dataset(self.name, self.root or None, self.seed)


class DatasetRows(torch.utils.data.Dataset):
    """Rows of a project dataset's train or test part, pickled by reference."""

    def __init__(self, ref: DatasetRef, part: Literal["train", "test"], indices: np.ndarray) -> None:
        self.ref, self.part, self.indices = ref, part, np.asarray(indices, dtype=np.int64)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            data = self.ref.load()
            self._arrays = (data.x_train, data.y_train) if self.part == "train" else (data.x_test, data.y_test)
        return self._arrays

    @property
    def targets(self) -> list[int]:
        return self.arrays()[1][self.indices].tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.arrays()
        row = self.indices[i]
        return torch.tensor(x[row]), int(y[row])

    def __getstate__(self) -> dict:
        return {"ref": self.ref, "part": self.part, "indices": self.indices, "_arrays": None}


def avalanche_dataset(rows: DatasetRows) -> TaskAwareSupervisedClassificationDataset:
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset

    return _make_taskaware_classification_dataset(rows, targets=rows.targets, task_labels=0)


def make_stream(ref: DatasetRef, train_rows: Sequence[np.ndarray], test_rows: Sequence[np.ndarray]) -> CLScenario:
    """An Avalanche benchmark with ``train_stream`` and ``test_stream``, one experience
    per entry of ``train_rows`` / ``test_rows`` (indices into the train / test part)."""
    from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets

    if len(train_rows) != len(test_rows):
        raise SplitError(f"{len(train_rows)} train experiences but {len(test_rows)} test experiences")
    return benchmark_from_datasets(
        train=[avalanche_dataset(DatasetRows(ref, "train", rows)) for rows in train_rows],
        test=[avalanche_dataset(DatasetRows(ref, "test", rows)) for rows in test_rows],
    )


def client_stream(ref: DatasetRef, local: np.ndarray, schedule: Sequence[Sequence[int]], stream: str, seed: int) -> CLScenario:
    """The stream of one client: its own training rows ``local`` cut into experiences;
    the test experiences are the dataset's test part, cut the same way for everyone."""
    data = ref.load()
    local = np.asarray(local)
    train = [local[rows] for rows in experience_rows(data.y_train[local], schedule, stream, seed)]
    return make_stream(ref, train, experience_rows(data.y_test, schedule, stream, seed))
