"""Shared test helpers: random orthogonal maps, small labelled data, small runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from flwr.supercore.task_identity import TaskIdentity

from relatlas.server.config import RunConfig

# What a run spends rather than computes: left out when runs are compared for the same numbers.
TIMINGS = {
    "wall_seconds", "client_train_seconds", "round_seconds", "round_replies_seconds", "server_merge_seconds",
    "server_scoring_seconds", "mlflow_run_id", "bytes_sent_per_client",
}  # fmt: skip


def as_recorded(figures: Any) -> Any:
    """Figures recorded from a run, to compare with a new run's: each float within 1e-5 of its value, as the
    same seed gives on another CPU (an AMD EPYC differs from the recording's in the 7th digit of a score)."""
    if isinstance(figures, float):
        return pytest.approx(figures, rel=1e-5, abs=1e-9)
    if isinstance(figures, dict):
        return {key: as_recorded(value) for key, value in figures.items()}
    if isinstance(figures, list):
        return [as_recorded(value) for value in figures]
    return figures


def pytest_collection_modifyitems(config, items):
    """Tests marked ``docker`` build images of several GB: they run only when a marker
    expression names them (`pytest -m docker`, `make docker-test`), never by default."""
    if "docker" in config.getoption("markexpr", ""):
        return
    skip = pytest.mark.skip(reason="builds Docker images and runs containers (minutes, GBs): `make docker-test`")
    for item in items:
        if item.get_closest_marker("docker"):
            item.add_marker(skip)


@pytest.fixture
def flower_task_identity(monkeypatch):
    """What Flower's runtime sets before a message is made outside a grid (restored after the test)."""
    for name in ("task_id", "run_id", "node_id"):
        monkeypatch.setattr(TaskIdentity, f"_{name}", 1)


@pytest.fixture(autouse=True)
def private_client_state(tmp_path, monkeypatch):
    """Clients keep their state under the test's folder, not the user's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "client-state"))


def random_orthogonal(dim: int, seed: int) -> torch.Tensor:
    """A Haar-random orthogonal matrix (QR of a Gaussian, signs fixed)."""
    gaussian = torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return q * torch.sign(torch.diagonal(r))


@pytest.fixture
def clustered() -> tuple[torch.Tensor, np.ndarray]:
    """300 points in 16-D: three well-separated Gaussian clusters and their labels."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=gen) * 6
    labels = np.repeat(np.arange(3), 100)
    points = centres[labels] + torch.randn(300, 16, generator=gen)
    return points, labels


def small_run_config(tmp_path: Path, **overrides) -> RunConfig:
    """The default digits federation, trained briefly, writing under ``tmp_path``."""
    values = {
        "epochs": 2,
        "probe-epochs": 10,
        "out-dir": str(tmp_path / "out"),
        "tracking-uri": f"sqlite:///{tmp_path}/mlflow.db",
    }
    return RunConfig.from_mapping(values | overrides)


def read_results(config: RunConfig) -> dict:
    return json.loads((Path(config.out_dir) / "results.json").read_text())
