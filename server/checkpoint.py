"""The server's checkpoint, written after every round, from which
``relatlas run --resume DIR`` continues a killed run.

``DIR/checkpoint/state.json`` holds the round, the config and its hash, the
MLflow run ids and the finished rounds' results; ``tensors-<round>.pt`` the
centralised reference's weights, the last merged spaces and the RNG states.
``state.json`` is replaced last and atomically, so a kill at any moment leaves
the previous round's checkpoint whole. Folders are 0700 and files 0600, written
without following planted links (``relatlas/safe_files.py``). The clients keep their own state
(``clients/checkpoint.py``); weights never leave them.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from relatlas.safe_files import atomic_write, private_dir, write_text_atomic
from relatlas.server.config import ConfigError, RunConfig

CHECKPOINT_DIR, STATE_FILE = "checkpoint", "state.json"
# Where and how patiently a run executes, not what it computes: free to change on resume
RESUME_FREE_KEYS = ("resume", "ray-address", "node-timeout", "round-timeout")


def config_hash(config: RunConfig) -> str:
    """A short hash of every setting that changes a run's numbers or where they go."""
    values = {key: value for key, value in config.to_mapping().items() if key not in RESUME_FREE_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def rng_states() -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Python's, NumPy's and torch's global RNG states, as JSON and as tensors."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, python_state, python_gauss = random.getstate()
    plain = {"numpy": [kind, position, has_gauss, gauss], "python": [version, list(python_state), python_gauss]}
    return plain, {"rng/torch": torch.get_rng_state(), "rng/numpy": torch.from_numpy(keys.astype(np.int64))}


def restore_rng_states(plain: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    kind, position, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), position, has_gauss, gauss))
    version, python_state, python_gauss = plain["python"]
    random.setstate((version, tuple(python_state), python_gauss))
    torch.set_rng_state(tensors["rng/torch"])


@dataclass
class Checkpoint:
    """What a run needs to go on after ``round``."""

    round: int
    config: dict[str, Any]
    config_hash: str
    mlflow_run_id: str
    rounds: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    client_runs: dict[str, str] = field(default_factory=dict)  # continual: partition -> nested MLflow run id
    rng: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Tensor] = field(default_factory=dict)

    def save(self, out_dir: Path) -> Path:
        """Write the tensors, then commit by replacing ``state.json``; drop older tensors."""
        directory = private_dir(out_dir / CHECKPOINT_DIR, trusted=out_dir)
        tensors_file = f"tensors-{self.round}.pt"
        with atomic_write(directory / tensors_file) as file:
            torch.save(self.tensors, file)
        state = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "tensors"}
        write_text_atomic(directory / STATE_FILE, json.dumps(state | {"tensors_file": tensors_file}, sort_keys=True))
        for old in directory.glob("tensors-*.pt"):
            if old.name != tensors_file:
                old.unlink()
        return directory / STATE_FILE

    @classmethod
    def load(cls, out_dir: Path) -> Checkpoint:
        directory = out_dir / CHECKPOINT_DIR
        if not (directory / STATE_FILE).exists():
            where = f"{CHECKPOINT_DIR}/{STATE_FILE}"
            raise ConfigError(f"resume: {out_dir} holds no checkpoint ({where}); was it a relatlas run's out-dir?")
        try:
            state = json.loads((directory / STATE_FILE).read_text())
            name = str(state.pop("tensors_file"))
            if Path(name).name != name:
                raise ValueError(f"tensors_file {name[:60]!r} is not a file name in the checkpoint folder")
            tensors = torch.load(directory / name, weights_only=True)  # tensors only: a planted file runs no code
            return cls(**state, tensors=tensors)
        except Exception as err:  # noqa: BLE001 - whatever is wrong with the files, one line
            reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            raise ConfigError(f"resume: the checkpoint in {directory} cannot be read ({reason})") from None


def completed_results(out_dir: Path) -> Path | None:
    """``out_dir/results.json`` if the run checkpointed there completed: ``status``
    is ``completed`` in the same MLflow run as the checkpoint's (not an older run's
    results beside a newer run's checkpoint). A resume then has nothing to do."""
    path = out_dir / "results.json"
    try:
        results = json.loads(path.read_text())
        state = json.loads((out_dir / CHECKPOINT_DIR / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    complete = isinstance(results, dict) and isinstance(state, dict) and results.get("status") == "completed"
    return path if complete and results.get("mlflow_run_id") == state.get("mlflow_run_id") else None


def resume_config(out_dir: Path, given: dict[str, Any]) -> RunConfig:
    """The checkpointed run's config with the options ``given`` now; refused if they
    change what the run computes (anything outside ``RESUME_FREE_KEYS``)."""
    checkpoint = Checkpoint.load(out_dir)
    values = checkpoint.config | given | {"resume": str(out_dir)}
    config = RunConfig.from_mapping(values)
    check_resumable(config, checkpoint)
    return config


def check_resumable(config: RunConfig, checkpoint: Checkpoint) -> None:
    if config_hash(config) == checkpoint.config_hash:
        return
    now = config.to_mapping()
    changed = sorted(key for key, value in checkpoint.config.items() if key not in RESUME_FREE_KEYS and now.get(key) != value)
    details = ", ".join(f"{key} {checkpoint.config[key]!r} -> {now[key]!r}" for key in changed)
    raise ConfigError(f"resume refused: the config differs from the checkpointed run's ({details or 'hash'}); start a new run")
