"""Client resources are checked against the Ray nodes before Flower builds its actor pool (before
Ray starts, for a new local instance), and a cluster to join must answer as Ray."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest
import ray

from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.ray_checks import check_ray_address, local_node_resources
from relatlas.server.simulation import ResourceError, check_client_resources, start_ray

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


def test_a_new_local_instance_too_small_for_a_client_is_refused_before_ray_starts(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    running = ray.is_initialized()  # False, unless an earlier test in this process left Ray up
    cpus = local_node_resources()["CPU"]
    with pytest.raises(ResourceError, match=f"num-cpus {cpus + 1:g} per client, but the largest Ray node has {cpus:g} CPUs"):
        start_ray(RunConfig(num_cpus=cpus + 1))
    with pytest.raises(ResourceError, match="num-cpus 3 per client, but the largest Ray node has 2 CPUs"):
        start_ray(RunConfig(num_cpus=3), own_instance=(2, 0))
    assert ray.is_initialized() == running


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once closed: nothing listens there


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_ray_address_where_no_cluster_answers_is_refused_in_one_line(scheme):
    address = f"{scheme}127.0.0.1:{_closed_port()}"
    with pytest.raises(ConfigError, match=f"ray-address {address}: no Ray cluster answers at 127.0.0.1:") as err:
        check_ray_address(address)
    assert "\n" not in str(err.value)


def test_a_ray_address_that_answers_but_is_not_ray_is_refused():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)  # answers, but not gRPC
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match="no Ray cluster answers at"):
            check_ray_address(f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()


@pytest.mark.parametrize("address", ["host:port", "ray://:80", "[::1"])
def test_a_ray_address_that_is_no_address_is_refused(address):
    with pytest.raises(ConfigError, match="is not HOST:PORT, ray://HOST:PORT, auto or local"):
        check_ray_address(address)
