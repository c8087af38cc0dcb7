"""RelativeStrategy in a Flower user's own loop: ``Strategy.start`` on a grid
whose nodes are relatlas ClientApps called in this process (no Ray), against
relatlas's own loop on the same grid."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.app import ArrayRecord, Message
from flwr.supercore.task_identity import TaskIdentity

from relatlas.server.federation import run_federation
from relatlas.server.local_grid import LocalGrid
from relatlas.server.strategy import MERGED, RelativeStrategy
from tests.conftest import small_run_config
from tests.hostile_clients import ATTACKS


@pytest.fixture(autouse=True)
def serverapp_identity(tmp_path, monkeypatch):
    """What Flower's ServerApp runtime sets before messages are made; runs write under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


class InProcessGrid(LocalGrid):
    """Flower's Message API to nodes 101, 102, ... that answer at once; ``silent`` nodes never do,
    ``colluding`` ones send the same made-up cosines (``uniform-random`` of ``tests/hostile_clients.py``)."""

    def __init__(self, num_nodes: int, state_dir: Path, silent: tuple[int, ...] = (), colluding: tuple[int, ...] = ()) -> None:
        super().__init__(num_nodes, state_dir)
        self.silent = silent
        self.colluding = colluding

    def answer(self, message: Message) -> Message | None:
        node = message.metadata.dst_node_id
        if node in self.silent:
            return None
        reply = super().answer(message)
        if node in self.colluding:
            ATTACKS["uniform-random"](reply)
        return reply


def _config(tmp_path: Path, **overrides):
    values = {"eval-samples": 200, "simulation-baselines": False, "client-scores": False, "round-timeout": 1.0}
    return small_run_config(tmp_path, **values | overrides)


@pytest.mark.parametrize("mode", ["shared", "bootstrapped"])
def test_flowers_own_loop_runs_the_strategy_with_the_numbers_of_relatlas_loop(tmp_path, mode):
    config = _config(tmp_path, **{"anchors-mode": mode, "seed-anchors": 4})
    strategy = RelativeStrategy(config)
    result = strategy.start(InProcessGrid(3, tmp_path / "a"), ArrayRecord(), num_rounds=1, timeout=10.0)
    metrics = result.train_metrics_clientapp[1]
    assert strategy.failures == [] and 0.5 < metrics["merged_accuracy"] <= 1.0
    assert result.arrays[MERGED].numpy().shape == (len(strategy.setup.samples), 64)  # samples x anchors
    own = run_federation(InProcessGrid(3, tmp_path / "b"), config)
    assert own["status"] == "completed" and own["merged_accuracy"] == metrics["merged_accuracy"]
    assert own["payload_bytes_per_client"] == metrics["payload_bytes_per_client"]


def test_a_silent_node_is_dropped_with_its_reason(tmp_path):
    config = _config(tmp_path, **{"num-clients": 4, "anchors-mode": "translated", "seed-anchors": 4})
    strategy = RelativeStrategy(config)
    strategy.start(InProcessGrid(4, tmp_path, silent=(102,)), ArrayRecord(), num_rounds=1, timeout=1.0)
    assert strategy.failures == [{"node": 102, "round": 1, "reason": "no reply within round-timeout 1 s"}]
    assert strategy.rounds[0]["client_partitions"] == [0, 2, 3]


def test_colluders_the_screen_drops_count_against_the_declared_hostile_clients(tmp_path):
    """Two of five collude; the screen drops both, so the three left need not withstand two more."""
    values = {"num-clients": 5, "aggregation": "trimmed-mean", "max-hostile": 2, "outlier-threshold": 3.0}
    strategy = RelativeStrategy(_config(tmp_path, **values))
    strategy.start(InProcessGrid(5, tmp_path, colluding=(104, 105)), ArrayRecord(), num_rounds=1, timeout=10.0)
    assert {f["node"] for f in strategy.failures} == {104, 105}
    assert strategy.rounds[0]["client_partitions"] == [0, 1, 2]
