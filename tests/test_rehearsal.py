"""A replay buffer survives the trip through plain tensors (``context.state``, the
client's state file) unchanged, and is read back without pickle."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from relatlas.benchmarks.rehearsal import buffer_arrays, replay_storage, restore_buffer, save_buffer
from relatlas.benchmarks.streams import DatasetRef, class_schedule, client_stream
from relatlas.clients.continual import build_strategy, train_experience
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.models import build_classifier


@pytest.mark.parametrize("strategy", ["replay", "er-ace", "der"])
def test_saved_buffer_restores_the_same_samples(strategy):
    ref = DatasetRef("digits", "", 0)
    data = ref.load()
    benchmark = client_stream(
        ref, np.arange(len(data.y_train)), class_schedule(10, 5, "class-incremental", 0), "class-incremental", 0
    )
    model = build_classifier(data.input_shape, data.num_classes, encoder="mlp", seed=0)
    config = ContinualConfig(strategy=strategy, buffer=100)
    learner = build_strategy(model, config, seed=0)
    train_experience(learner, benchmark, 0, seed=0)
    train_experience(learner, benchmark, 1, seed=0)
    buffer = io.BytesIO()
    torch.save(save_buffer(learner), buffer)
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)  # what a resumed client reads
    assert all(isinstance(value, torch.Tensor) for value in saved.values())

    fresh = build_strategy(model, config, seed=0)
    restore_buffer(fresh, saved)
    stored, restored = replay_storage(learner), replay_storage(fresh)
    before, after = buffer_arrays(stored.buffer), buffer_arrays(restored.buffer)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert list(stored.buffer_groups) == list(restored.buffer_groups)
    for group, copy in zip(stored.buffer_groups.values(), restored.buffer_groups.values()):
        assert torch.equal(group._buffer_weights, copy._buffer_weights) and group.max_size == copy.max_size
    if strategy == "der":
        assert torch.equal(stored.buffer[0][3], restored.buffer[0][3])  # the logits DER distils towards


def test_naive_has_nothing_to_save():
    model = build_classifier((64,), 10, encoder="mlp")
    assert save_buffer(build_strategy(model, ContinualConfig(strategy="naive"), seed=0)) == {}
