"""A replay buffer survives the trip through bytes (``context.state``) unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.rehearsal import buffer_arrays, replay_storage, restore_buffer, save_buffer
from benchmarks.streams import DatasetRef, class_schedule, client_stream
from clients.continual import ContinualConfig, build_strategy, train_experience
from clients.models import build_classifier


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
    saved = save_buffer(learner)
    assert 0 < len(saved) < 200_000  # row indices, not images or whole index tensors

    fresh = build_strategy(model, config, seed=0)
    restore_buffer(fresh, saved)
    before, after = buffer_arrays(replay_storage(learner).buffer), buffer_arrays(replay_storage(fresh).buffer)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


def test_naive_has_nothing_to_save():
    model = build_classifier((64,), 10, encoder="mlp")
    assert save_buffer(build_strategy(model, ContinualConfig(strategy="naive"), seed=0)) == b""
