import random

import numpy as np
import pytest
import torch

from clients.checkpoint import load_client_state, save_client_state
from server.checkpoint import Checkpoint, check_resumable, config_hash, restore_rng_states, rng_states
from server.config import ConfigError, RunConfig


def _checkpoint(round_number: int, config: RunConfig) -> Checkpoint:
    rng, tensors = rng_states()
    return Checkpoint(round_number, config.to_mapping(), config_hash(config), "run", [{"round": 1}], [], {}, rng, tensors)


def test_a_checkpoint_round_trips_and_keeps_only_its_own_tensors(tmp_path):
    config = RunConfig()
    _checkpoint(1, config).save(tmp_path)
    _checkpoint(2, config).save(tmp_path)
    loaded = Checkpoint.load(tmp_path)
    assert loaded.round == 2 and loaded.rounds == [{"round": 1}] and loaded.config_hash == config_hash(config)
    assert sorted(p.name for p in (tmp_path / "checkpoint").iterdir()) == ["state.json", "tensors-2.pt"]


def test_an_unreadable_checkpoint_is_refused_in_one_line(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{ half a file")
    with pytest.raises(ConfigError, match="resume: the checkpoint in .* cannot be read \\(JSONDecodeError"):
        Checkpoint.load(tmp_path)


def test_restored_rng_states_repeat_the_same_draws(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    _checkpoint(1, RunConfig()).save(tmp_path)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    loaded = Checkpoint.load(tmp_path)
    restore_rng_states(loaded.rng, loaded.tensors)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_only_where_and_how_patiently_a_run_executes_may_change_on_resume():
    config = RunConfig()
    checkpoint = _checkpoint(1, config)
    check_resumable(RunConfig(ray_address="auto", round_timeout=5.0, resume="runs/latest"), checkpoint)
    changed = r"differs from the checkpointed run's \(aggregation 'mean' -> 'product', seed 0 -> 1\)"
    with pytest.raises(ConfigError, match=changed):
        check_resumable(RunConfig(aggregation="product", seed=1), checkpoint)


def test_a_client_keeps_its_two_latest_rounds(tmp_path):
    weights = {"w": torch.arange(3.0)}
    for round_number in (1, 2, 3):
        save_client_state(tmp_path, round_number, weights, b"buffer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["round-2.pt", "round-3.pt"]
    model, buffer = load_client_state(tmp_path, 2)
    assert torch.equal(model["w"], weights["w"]) and buffer == b"buffer"
    with pytest.raises(RuntimeError, match="cannot resume: this client kept no state of round 1"):
        load_client_state(tmp_path, 1)
