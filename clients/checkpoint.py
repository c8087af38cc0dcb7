"""A client's state on its own disk, so that a resumed run continues from the
round the server checkpointed: a resumed run is a new Flower run, whose
``context.state`` starts empty. The weights never leave the client.

Files: ``<state-dir>/<run-key>/partition-<p>/round-<r>.pt``, where ``state-dir``
is the SuperNode's ``--node-config state-dir=...`` (default: a folder in the
system's temporary directory) and ``run-key`` is the server's config hash. The
two latest rounds are kept: a run killed during round r resumes after r - 1.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

STATE_DIR_KEY = "state-dir"
KEPT_ROUNDS = 2


def client_state_dir(node_config: Mapping[str, Any], run_key: str, partition: int) -> Path:
    root = str(node_config.get(STATE_DIR_KEY, "")) or str(Path(tempfile.gettempdir()) / "relatlas-client-state")
    return Path(root) / run_key / f"partition-{partition}"


def save_client_state(directory: Path, round_number: int, model: dict[str, Tensor], buffer: bytes | None) -> None:
    """Write this round's state atomically; delete rounds older than the two latest."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"round-{round_number}.pt"
    torch.save({"model": model, "buffer": buffer}, path.with_suffix(".partial"))
    path.with_suffix(".partial").replace(path)
    for old in directory.glob("round-*.pt"):
        if int(old.stem.removeprefix("round-")) <= round_number - KEPT_ROUNDS:
            old.unlink()


def load_client_state(directory: Path, round_number: int) -> tuple[dict[str, Tensor], bytes | None]:
    """The model weights and replay buffer saved after ``round_number``."""
    path = directory / f"round-{round_number}.pt"
    if not path.exists():
        raise RuntimeError(f"cannot resume: this client kept no state of round {round_number} in {directory.parent}")
    state = torch.load(path, weights_only=True)
    return state["model"], state["buffer"]
