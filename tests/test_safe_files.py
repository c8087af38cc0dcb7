"""Outputs and client state against planted links, other users and racing clients
(``relatlas/safe_files.py``): no link is followed on write, folders are 0700 and
files 0600, and clients creating the same state folder at once all succeed."""

from __future__ import annotations

import grp
import os
import stat
import threading
from pathlib import Path

import pytest
import torch

from relatlas.clients.checkpoint import client_state_dir, load_client_state, save_client_state
from relatlas.safe_files import UnsafePathError, _group_has_others, atomic_write, check_private_dir, private_dir
from relatlas.server.checkpoint import Checkpoint, config_hash
from relatlas.server.config import RunConfig
from relatlas.server.plots import plot_accuracies
from relatlas.server.simulation import run_simulation
from relatlas.server.tracking import check_outputs, use_tracking, write_results
from tests.conftest import read_results, small_run_config
from tests.test_checkpoint import _checkpoint

VICTIM = b"the victim's own bytes"


def _mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


def test_a_link_planted_at_a_results_partial_name_is_never_written_through(tmp_path, victim):
    out = tmp_path / "out"
    out.mkdir(mode=0o700)
    (out / "results.json.partial").symlink_to(victim)
    write_results(out, {"status": "completed"})
    assert victim.read_bytes() == VICTIM
    assert not (out / "results.json").is_symlink() and '"completed"' in (out / "results.json").read_text()


def test_links_planted_in_the_checkpoint_folder_are_never_written_through(tmp_path, victim):
    folder = tmp_path / "checkpoint"
    folder.mkdir(mode=0o700)
    for name in ("tensors-1.pt.partial", "state.json.partial"):
        (folder / name).symlink_to(victim)
    _checkpoint(1, RunConfig()).save(tmp_path)
    assert victim.read_bytes() == VICTIM
    assert not (folder / "state.json").is_symlink() and Checkpoint.load(tmp_path).round == 1


def test_a_link_planted_at_a_client_round_partial_is_never_written_through(tmp_path, victim):
    directory = client_state_dir({}, "0123456789abcdef", 0)
    private_dir(directory)
    (directory / "round-1.partial").symlink_to(victim)
    save_client_state(directory, 1, {"w": torch.ones(2)}, None)
    assert victim.read_bytes() == VICTIM
    assert torch.equal(load_client_state(directory, 1)[0]["w"], torch.ones(2))


def test_a_partition_folder_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    directory = client_state_dir({}, "0123456789abcdef", 0)
    private_dir(directory.parent)
    directory.symlink_to(target)
    with pytest.raises(UnsafePathError, match=f"refusing folder {directory}: it is a symbolic link"):
        save_client_state(directory, 1, {"w": torch.ones(2)}, None)
    assert list(target.iterdir()) == []


def test_a_state_folder_others_may_write_to_is_refused_in_one_line(tmp_path):
    run = client_state_dir({}, "0123456789abcdef", 0).parent
    run.mkdir(parents=True)
    run.chmod(0o777)
    with pytest.raises(UnsafePathError, match=f"refusing folder {run}: others may write to it \\(mode 777\\)"):
        save_client_state(run / "partition-0", 1, {"w": torch.ones(2)}, None)


@pytest.mark.parametrize("planted", ["link", "open"])
def test_an_out_dir_that_is_a_link_or_open_to_others_is_refused_before_anything_runs(tmp_path, planted):
    out = tmp_path / "out"
    if planted == "link":
        (tmp_path / "target").mkdir()
        out.symlink_to(tmp_path / "target")
    else:
        out.mkdir()
        out.chmod(0o777)
    with pytest.raises(UnsafePathError, match=f"refusing folder {out}: "):
        check_outputs(out, f"sqlite:///{tmp_path}/m.db")


def test_server_outputs_are_private(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs" / "out"
    write_results(out, {"status": "running"})
    _checkpoint(1, RunConfig()).save(out)
    plot_accuracies({"client_partitions": [0], "client_accuracy": [0.5], "merged_accuracy": 0.6}, "t", out / "accuracy.png")
    use_tracking(f"sqlite:///{tmp_path}/new.db", "relatlas")
    for folder in (out.parent, out, out / "checkpoint"):
        assert _mode(folder) == 0o700, folder
    for file in (out / "results.json", out / "accuracy.png", out / "checkpoint" / "state.json", tmp_path / "new.db"):
        assert _mode(file) == 0o600, file
    assert _mode(out / "checkpoint" / "tensors-1.pt") == 0o600
    assert not [path for path in out.rglob("*") if path.name.endswith(".partial")]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    target = tmp_path / "file"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as file:
        file.write(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["file"]


def test_clients_creating_the_same_state_folders_at_once_all_succeed(tmp_path):
    """Before: each checked, then made, the missing folders; the slower one hit FileExistsError."""
    clients, errors = 8, []
    barrier = threading.Barrier(clients)

    def save(partition: int) -> None:
        barrier.wait()
        try:
            save_client_state(client_state_dir({}, "0123456789abcdef", partition), 1, {"w": torch.ones(1)}, None)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=save, args=(p,)) for p in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    run = client_state_dir({}, "0123456789abcdef", 0).parent
    assert sorted(p.name for p in run.iterdir()) == [f"partition-{p}" for p in range(clients)]
    assert {_mode(folder) for folder in (run, run.parent, *run.iterdir())} == {0o700}


def test_a_group_writable_folder_is_refused_unless_the_group_is_the_users_own(tmp_path):
    """With a umask of 002 every folder is group-writable, for the user's private group only."""
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o770)
    if _group_has_others(os.getegid()):
        with pytest.raises(UnsafePathError, match="others may write to it \\(mode 770\\)"):
            check_private_dir(folder)
    else:
        check_private_dir(folder)
    if os.geteuid() == 0:  # root may hand the folder to a group of other users
        os.chown(folder, -1, grp.getgrnam("daemon").gr_gid)
        with pytest.raises(UnsafePathError, match="others may write to it \\(mode 770\\)"):
            check_private_dir(folder)


@pytest.mark.faults
def test_a_run_with_planted_links_writes_through_none_and_keeps_its_outputs_private(tmp_path, victim):
    config = small_run_config(tmp_path, rounds=2, epochs=1, **{"probe-epochs": 5, "client-scores": False})
    out = Path(config.out_dir)
    (out / "checkpoint").mkdir(parents=True, mode=0o700)
    for name in ("results.json.partial", "checkpoint/state.json.partial", "checkpoint/tensors-1.pt.partial"):
        (out / name).symlink_to(victim)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = client_state_dir({}, config_hash(config), 1)
    linked.parent.mkdir(parents=True, mode=0o700)
    linked.symlink_to(elsewhere)  # partition 1's folder: its saves are refused, it fails round 1

    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and victim.read_bytes() == VICTIM and list(elsewhere.iterdir()) == []
    assert [f["round"] for f in results["failures"]] == [1] and results["rounds"][0]["client_partitions"] == [0, 2]
    assert f"refusing folder {linked}: it is a symbolic link" in results["failures"][0]["reason"]
    for file in ("results.json", "spaces.png", "checkpoint/state.json", "checkpoint/tensors-2.pt"):
        assert _mode(out / file) == 0o600 and not (out / file).is_symlink(), file
    assert _mode(tmp_path / "mlflow.db") == 0o600


def test_a_folder_that_cannot_be_created_is_named_in_one_line(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UnsafePathError, match=f"folder {tmp_path / 'file' / 'out'} cannot be created: Not a directory"):
        private_dir(tmp_path / "file" / "out")
