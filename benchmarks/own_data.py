"""A client's own training data, in place of a partition of the run's dataset.

A run with ``client-data`` set (``relatlas run --client-data a,b,c``: dataset
specs cycled over the clients, or ``node``: each SuperNode's ``--node-config
data=SPEC``) keeps the run's ``dataset`` as the public pool only: the anchors and
the evaluation samples. Its label list (``class-names``, or the pool's class
names, or 0..C-1 where the pool names none) is what every client's labels mean:
a client maps its source's class names onto it by name, or, for a source that
names none (``npz:``, ``digits``), keeps its label indices. A class the list does
not hold is refused in one line. The client trains on all of its source's
training rows: no split, no partition.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from relatlas.benchmarks.datasets import Dataset, first_few, load_dataset
from relatlas.benchmarks.sources import DatasetError
from relatlas.section_base import ConfigError
from relatlas.sections import NODE_DATA, NODE_DATA_KEY, client_data_specs


def own_data_spec(client_data: str, node_data: str, partition: int) -> str | None:
    """The source client ``partition`` trains on: its SuperNode's ``data`` if set, else
    the run's ``client-data`` list cycled; ``None``: a partition of the run's dataset."""
    specs = client_data_specs(client_data)
    if not specs:
        if node_data:
            raise ConfigError(
                f"this SuperNode names its own data ({NODE_DATA_KEY}={node_data!r}) but the run splits its dataset: "
                f"run with --client-data {NODE_DATA}"
            )
        return None
    spec = node_data or specs[partition % len(specs)]
    if spec == NODE_DATA:
        raise ConfigError(f"client-data {NODE_DATA}: this SuperNode has no --node-config {NODE_DATA_KEY}=SPEC")
    return spec


def run_classes(pool: Dataset, class_names: str) -> tuple[str, ...]:
    """The run's label list: ``class-names`` if given (one per class of the pool, and its
    names if the pool has them), else the pool's names, else ``"0"``..``"C-1"``."""
    given = tuple(class_names.split(",")) if class_names else ()
    own = pool.classes or tuple(str(label) for label in range(pool.num_classes))
    if given and (len(given) != pool.num_classes or (pool.classes and given != pool.classes)):
        raise ConfigError(
            f"class-names names {len(given)} classes; dataset {pool.name!r} has {pool.num_classes} ({first_few(own)})"
        )
    return given or own


def load_own_data(spec: str, root: str | None, seed: int, classes: tuple[str, ...]) -> Dataset:
    """``spec``'s dataset, its labels those of the run's ``classes``: a ``DatasetError``
    in one line naming the first class the list does not hold."""
    data = load_dataset(spec, root, seed)
    if data.classes:
        index = {name: label for label, name in enumerate(classes)}
        unknown = [name for name in data.classes if name not in index]
        mapping = np.array([index.get(name, -1) for name in data.classes], dtype=np.int64)
    else:
        unknown = [str(label) for label in range(data.num_classes) if label >= len(classes)]
        mapping = np.arange(data.num_classes, dtype=np.int64)
    if unknown:
        raise DatasetError(
            f"client data {spec!r}: class {first_few(unknown)} is not in the run's label list ({first_few(list(classes))})"
        )
    return dataclasses.replace(data, y_train=mapping[data.y_train], y_test=mapping[data.y_test], classes=classes)
