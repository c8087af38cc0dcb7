"""A deployment on loopback (TLS, SuperNode authentication) in which every SuperNode
reads its own file, named in its ``--node-config``: the server holds only the public pool."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from relatlas.server.deployment import LocalDeployment
from tests.test_deployment import ROOT, _free_port_block, _overrides, _results
from tests.test_own_data import own_npz

pytestmark = pytest.mark.deployment


def digits_npz(path, rows: slice):
    """Some of scikit-learn's digits, unnamed classes 0..9 like the run's pool."""
    bunch = load_digits()
    np.savez(path, X=(bunch.data[rows] / 16.0).astype(np.float32), y=bunch.target[rows])
    return path


def test_every_supernode_trains_on_its_own_file_and_one_with_an_unknown_class_is_refused(tmp_path_factory, tmp_path):
    data = tmp_path_factory.mktemp("node-data")
    files = [digits_npz(data / "node-0.npz", slice(0, 900)), digits_npz(data / "node-1.npz", slice(900, None))]
    files.append(own_npz(data / "node-2.npz", list(range(12)), side=8))  # labels 10, 11: outside digits' 0..9
    base = _free_port_block(4)
    deployment = LocalDeployment(
        tmp_path_factory.mktemp("deployment"), supernodes=3, port=base, supernode_port=base + 1,
        node_configs=tuple(f"data='npz:{file}'" for file in files),
    )  # fmt: skip
    deployment.up()
    try:
        deployment.run(ROOT, _overrides(tmp_path, "own", **{"client-data": "node", "rounds": 2}))
    finally:
        deployment.down()
    results = _results(tmp_path, "own")
    assert results["status"] == "completed" and len(results["client_partitions"]) == 2
    assert [f["round"] for f in results["failures"]] == [1, 2]
    refused = "class 10, 11 is not in the run's label list (0, 1, 2, 3, 4 and 5 more)"
    assert all(refused in failure["reason"] for failure in results["failures"])
    assert 0.5 < results["merged_accuracy"] <= 1.0
    assert results["classes"] == [str(label) for label in range(10)]  # the run's label list, sent to the nodes
