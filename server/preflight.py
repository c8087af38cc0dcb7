"""What a run checks before Ray starts (``relatlas.run``, and the CLI's commands
through it or directly): the outputs can be written, the data loads and splits,
each encoder takes the data's inputs and returns a finite ``[batch, width]``
embedding, and each similarity the aggregation asks for returns ``[rows, anchors]``.
A bad place, dataset, size, encoder or similarity then fails in one line instead
of as someone else's error inside a client, minutes later. Later loads hit the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from relatlas.aggregation.aggregators import needs_labels, required_similarities
from relatlas.aggregation.projection import relative_subspaces
from relatlas.benchmarks.datasets import Dataset, DatasetError, read_dataset
from relatlas.benchmarks.own_data import load_own_data, run_classes
from relatlas.benchmarks.sources import first_batch
from relatlas.benchmarks.splits import SplitError, plan_for
from relatlas.benchmarks.streams import class_schedule
from relatlas.clients.models import check_encoders
from relatlas.sections import NODE_DATA, client_data_specs
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.tracking import check_outputs

ENCODER_CHECK_BATCH = 2  # training rows every encoder embeds once: two, so that batch-norm layers can run
BAD_INPUT = (ConfigError, DatasetError, SplitError)  # what ``refuse_bad_input`` raises, each in one line


def refuse_bad_input(config: RunConfig) -> None:
    """Check ``config``'s outputs, data, split (and class schedule) and encoders."""
    check_outputs(Path(config.out_dir), config.tracking_uri)
    dataset = read_dataset(config.dataset, config.data_root or None, config.seed)  # not cached: a server process keeps none of it
    plan = plan_for(dataset.y_train, config, config, config.seed)
    _check_labelled_anchors(config.aggregation, dataset.y_train[plan.anchor_indices])
    _check_own_data(config, dataset)
    batch = first_batch(dataset.x_train, ENCODER_CHECK_BATCH)  # a copy: cached arrays are read-only
    try:
        check_encoders(config.encoder, batch, config.embedding_dim)
    except ValueError as err:
        raise ConfigError(f"encoder: {err}") from None
    if config.scenario == "continual":
        if isinstance(batch, list):
            raise ConfigError(f"the continual scenario trains on tensors; dataset {config.dataset!r} holds text")
        class_schedule(dataset.num_classes, config.experiences, config.stream, config.seed)
    _check_similarities(config.aggregation)


def _check_labelled_anchors(aggregation: str, anchor_labels: np.ndarray) -> None:
    """A merge that learns from the anchors' labels has two classes or more among them to learn from."""
    classes = len(np.unique(anchor_labels))
    if needs_labels(aggregation) and classes < 2:
        raise ConfigError(
            f"aggregation {aggregation} learns from the anchors' labels, and the {len(anchor_labels)} anchors hold {classes} "
            "class; it needs 2 or more (more shared classes, or a split that draws anchors from every class)"
        )


def _check_own_data(config: RunConfig, pool: Dataset) -> None:
    """Each source of ``client-data`` (a SuperNode's ``node`` is checked by the node) loads,
    maps onto the run's label list and has the pool's inputs, which its client will project."""
    classes = run_classes(pool, config.class_names)
    for spec in [spec for spec in dict.fromkeys(client_data_specs(config.client_data)) if spec != NODE_DATA]:
        own = load_own_data(spec, config.data_root or None, config.seed, classes)
        if own.input_shape != pool.input_shape:
            raise ConfigError(f"client-data {spec!r} has inputs of shape {own.input_shape}; the dataset {pool.input_shape}")


def _check_similarities(aggregation: str) -> None:
    """Every similarity ``aggregation`` asks the clients for, on three rows and two anchors."""
    rows, anchors = torch.linspace(-1.0, 1.0, 12).reshape(3, 4), torch.linspace(2.0, -1.0, 8).reshape(2, 4)
    try:
        relative_subspaces(rows, anchors, required_similarities(aggregation))
    except ValueError as err:
        raise ConfigError(f"aggregation {aggregation}: {err}") from None
