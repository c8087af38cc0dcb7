"""A federation joins a running multi-node Ray cluster (two nodes on loopback,
started with Ray's cluster utilities) through ``ray-address``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from relatlas.server.config import RunConfig
from relatlas.server.simulation import run_simulation


@pytest.fixture
def two_node_cluster():
    """A head node with no CPUs and a worker node with two: clients can only run on the worker."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_federation_runs_on_the_worker_node_of_a_cluster(two_node_cluster, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = RunConfig.from_mapping(
        {
            "ray-address": two_node_cluster.address, "epochs": 1, "probe-epochs": 5, "simulation-baselines": False,
            "out-dir": str(tmp_path / "out"), "tracking-uri": f"sqlite:///{tmp_path}/mlflow.db",
        }
    )  # fmt: skip
    run_simulation(config)
    results = json.loads((Path(config.out_dir) / "results.json").read_text())
    assert results["status"] == "completed" and results["client_partitions"] == [0, 1, 2]
    assert results["config"]["ray-address"] == two_node_cluster.address
