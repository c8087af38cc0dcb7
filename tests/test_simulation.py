"""Client resources are checked against the Ray nodes before Flower builds its actor pool."""

from __future__ import annotations

import pytest

from relatlas.server.simulation import ResourceError, check_client_resources

LAPTOP = [{"CPU": 2.0, "memory": 1e9}]
GPU_CLUSTER = [{"CPU": 16.0}, {"CPU": 8.0, "GPU": 1.0}]


def test_resources_some_node_can_give_pass():
    check_client_resources(1.0, 0.0, LAPTOP)
    check_client_resources(4.0, 0.5, GPU_CLUSTER)
    check_client_resources(8.0, 1.0, GPU_CLUSTER)


@pytest.mark.parametrize(
    ("cpus", "gpus", "nodes", "message"),
    [
        (1.0, 0.5, LAPTOP, "num-gpus 0.5 per client, but no node of the Ray cluster has a GPU"),
        (1.0, 2.0, GPU_CLUSTER, "num-gpus 2 per client, but the largest node has 1 GPUs"),
        (4.0, 0.0, LAPTOP, "num-cpus 4 per client, but the largest Ray node has 2 CPUs"),
    ],
)
def test_resources_no_node_can_give_are_refused(cpus, gpus, nodes, message):
    with pytest.raises(ResourceError, match=message):
        check_client_resources(cpus, gpus, nodes)
