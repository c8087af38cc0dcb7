import os
import pickle
import random
import stat

import numpy as np
import pytest
import torch

from relatlas.clients.checkpoint import clear_client_state, client_state_dir, load_client_state, save_client_state
from relatlas.server.checkpoint import Checkpoint, check_resumable, config_hash, restore_rng_states, rng_states
from relatlas.server.config import ConfigError, RunConfig


class _Planted:
    """Unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch planted-ran",))


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


@pytest.mark.parametrize(
    ("tensors", "reason"),
    [
        (b"PK\x03\x04 not a zip", "cannot be read"),  # a corrupted tensor file
        (pickle.dumps(_Planted()), "cannot be read .*Unpickl"),  # a planted pickle: refused, never run
    ],
)
def test_a_corrupted_or_planted_checkpoint_tensor_file_is_refused_in_one_line(tmp_path, monkeypatch, tensors, reason):
    monkeypatch.chdir(tmp_path)
    _checkpoint(1, RunConfig()).save(tmp_path)
    (tmp_path / "checkpoint" / "tensors-1.pt").write_bytes(tensors)
    with pytest.raises(ConfigError, match=reason) as refused:
        Checkpoint.load(tmp_path)
    assert "\n" not in str(refused.value) and not (tmp_path / "planted-ran").exists()


def test_a_checkpoint_naming_a_file_elsewhere_is_refused(tmp_path):
    _checkpoint(1, RunConfig()).save(tmp_path)
    state = tmp_path / "checkpoint" / "state.json"
    state.write_text(state.read_text().replace('"tensors-1.pt"', '"../../elsewhere.pt"'))
    with pytest.raises(ConfigError, match="is not a file name in the checkpoint folder"):
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


def test_a_client_keeps_its_two_latest_rounds_and_rejoins_from_its_last_one(tmp_path):
    weights, buffer = {"w": torch.arange(3.0)}, {"0/inputs": torch.ones(2, 4)}
    directory = tmp_path / "run" / "partition-0"
    for round_number in (1, 2, 3):
        save_client_state(directory, round_number, weights, buffer)
    assert sorted(p.name for p in directory.iterdir()) == ["round-2.pt", "round-3.pt"]
    model, restored = load_client_state(directory, 2)
    assert torch.equal(model["w"], weights["w"]) and torch.equal(restored["0/inputs"], buffer["0/inputs"])
    assert load_client_state(directory, 7) is not None  # missed rounds 4 to 7: the state of round 3
    assert load_client_state(directory, 1) is None  # nothing that early: start afresh
    clear_client_state(directory)
    assert not (tmp_path / "run").exists()


def test_client_state_is_private_and_named_by_a_hex_run_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    directory = client_state_dir({}, "0123456789abcdef", 1)
    assert directory == tmp_path / "state" / "relatlas" / "client-state" / "0123456789abcdef" / "partition-1"
    save_client_state(directory, 1, {"w": torch.zeros(1)}, None)
    for folder in (directory, directory.parent, tmp_path / "state" / "relatlas"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE((directory / "round-1.pt").stat().st_mode) == 0o600
    for key in ("../../etc", "/tmp/x", "ABC", "", "abcdef12\n"):
        with pytest.raises(ValueError, match="is not a hex digest"):
            client_state_dir({}, key, 0)


def test_a_planted_state_file_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / "partition-0"
    directory.mkdir()
    with open(directory / "round-1.pt", "wb") as file:
        pickle.dump({"model": _Planted(), "buffer": None}, file)
    torch.save({"model": {"w": _Planted()}, "buffer": None}, directory / "round-2.pt")
    for round_number in (1, 2):
        with pytest.raises(RuntimeError, match=f"refusing client state .*round-{round_number}.pt: not a plain tensor file"):
            load_client_state(directory, round_number)
    assert not (tmp_path / "planted-ran").exists()


def test_files_that_are_not_round_states_are_left_alone(tmp_path):
    """A stray ``round-x.pt`` used to make every save of that client fail."""
    directory = tmp_path / "partition-0"
    directory.mkdir()
    (directory / "round-x.pt").write_bytes(b"not ours")
    for round_number in (1, 2, 3):
        save_client_state(directory, round_number, {"w": torch.full((1,), float(round_number))}, None)
    assert sorted(p.name for p in directory.iterdir()) == ["round-2.pt", "round-3.pt", "round-x.pt"]
    assert load_client_state(directory, 9)[0]["w"].item() == 3.0
