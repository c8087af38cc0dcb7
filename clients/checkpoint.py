"""A client's state on its own disk, so that a resumed run continues from the
round the server checkpointed: a resumed run is a new Flower run, whose
``context.state`` starts empty. The weights never leave the client.

Files: ``<state-dir>/<run-key>/partition-<p>/round-<r>.pt``, where ``state-dir``
is the SuperNode's ``--node-config state-dir=...`` (default: ``relatlas/client-state``
under ``$XDG_STATE_HOME``, else ``~/.local/state``) and ``run-key`` is the
server's config hash, refused unless it is a hex digest (it comes from a
message). Folders are created 0700 and files 0600, so other users read nothing,
and written as ``relatlas/safe_files.py`` does: no planted link is followed, and a
state folder that is a link or that others may write to is refused. The files
hold tensors only and load with ``weights_only=True``. The two latest
rounds are kept: a run killed during round r resumes after r - 1; the last
round removes the partition's folder (``relatlas state clear`` removes all).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from relatlas.safe_files import atomic_write, private_dir

STATE_DIR_KEY = "state-dir"
KEPT_ROUNDS = 2
RUN_KEY = re.compile(r"[0-9a-f]{8,64}")  # matched in full: no trailing newline
ROUND_FILE = re.compile(r"round-([0-9]{1,9})\.pt")


def default_state_root() -> Path:
    """The user's private state folder for relatlas clients."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "relatlas" / "client-state"


def state_root(node_config: Mapping[str, Any]) -> Path:
    """The node's state folder: its ``state-dir``, else the user's default."""
    return Path(str(node_config.get(STATE_DIR_KEY, "")) or str(default_state_root()))


def client_state_dir(node_config: Mapping[str, Any], run_key: str, partition: int) -> Path:
    if not RUN_KEY.fullmatch(run_key):
        raise ValueError(f"run-key {run_key[:80]!r} is not a hex digest; refusing it as a folder name")
    return state_root(node_config) / run_key / f"partition-{partition}"


def _saved_rounds(directory: Path) -> dict[int, Path]:
    """Round -> file of the states saved in ``directory``; other files are not this module's and are left alone."""
    found = (ROUND_FILE.fullmatch(path.name) for path in directory.iterdir()) if directory.is_dir() else ()
    return {int(match[1]): directory / match[0] for match in found if match}


def save_client_state(directory: Path, round_number: int, model: dict[str, Tensor], buffer: dict[str, Tensor] | None) -> None:
    """Write this round's state atomically, 0600 from the start; delete rounds older than the two latest.
    The folders from the run's folder down are checked (``private_dir``): its partition
    folders are created by several clients at once."""
    private_dir(directory, trusted=directory.parent.parent)
    with atomic_write(directory / f"round-{round_number}.pt") as file:
        torch.save({"model": model, "buffer": buffer}, file)
    for saved, old in _saved_rounds(directory).items():
        if saved <= round_number - KEPT_ROUNDS:
            old.unlink()


def load_client_state(directory: Path, round_number: int) -> tuple[dict[str, Tensor], dict[str, Tensor] | None] | None:
    """(model weights, replay buffer) of the latest round up to ``round_number`` this
    client saved, or ``None`` if none: a client that missed rounds rejoins from its
    last state, one that never finished a round from the start."""
    saved = _saved_rounds(directory)
    usable = [r for r in saved if r <= round_number]
    if not usable:
        return None
    path = saved[max(usable)]
    try:
        state = torch.load(path, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a planted or corrupted file is refused, whatever it holds
        raise RuntimeError(f"refusing client state {path}: not a plain tensor file ({type(err).__name__})") from None
    return state["model"], state["buffer"]


def clear_client_state(directory: Path) -> None:
    """Remove a finished run's state for this partition, and the run's folder once empty."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        directory.parent.rmdir()  # only once empty: other partitions may still be writing theirs
    except OSError:
        pass
