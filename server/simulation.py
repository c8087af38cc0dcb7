"""Run the ServerApp and ClientApps on Flower's simulation engine (Ray backend),
in this process, and tear everything down afterwards.

Ray is started here (or joined, with ``ray-address`` or ``RAY_ADDRESS``) rather
than by Flower, so that client resources no node can give are refused in one
line instead of leaving Flower with an empty actor pool.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

import ray
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from relatlas.clients.client_app import app as default_client_app
from relatlas.library_noise import quiet_library_noise
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.interruption import on_signals
from relatlas.server.ray_checks import check_ray_address, local_node_resources
from relatlas.server.server_app import app as default_server_app


class ResourceError(ConfigError):
    """Client resources that no Ray node can provide."""


def check_client_resources(num_cpus: float, num_gpus: float, nodes: Sequence[Mapping[str, float]]) -> None:
    """Refuse per-client resources that no single node has (an actor runs on one node).

    ``nodes``: each alive node's total resources, as in ``ray.nodes()``.
    """
    if num_gpus > 0:
        gpus = [node.get("GPU", 0.0) for node in nodes]
        if not any(g >= num_gpus for g in gpus):
            where = "no node of the Ray cluster has a GPU" if sum(gpus) == 0 else f"the largest node has {max(gpus):g} GPUs"
            raise ResourceError(f"num-gpus {num_gpus:g} per client, but {where}: set num-gpus 0 or join a cluster with GPUs")
    cpus = [node.get("CPU", 0.0) for node in nodes]
    if not any(c >= num_cpus for c in cpus):
        raise ResourceError(f"num-cpus {num_cpus:g} per client, but the largest Ray node has {max(cpus, default=0):g} CPUs")


def init_ray(address: str, **sizes: int) -> None:
    """``ray.init`` as relatlas uses it: quiet, no dashboard, and workers that
    import what this process imports (as Flower's own Ray start does) and start
    with the libraries' noise quieted (``relatlas/library_noise.py``)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's coming default; silences its warning
    quiet_library_noise()  # after this module's Flower imports, which turn every DeprecationWarning on
    check_ray_address(address)  # a cluster where nothing listens: refused now, not after minutes inside ray.init
    env = {
        "env_vars": {"PYTHONPATH": os.pathsep.join([*sys.path, os.environ.get("PYTHONPATH", "")])},
        "worker_process_setup_hook": quiet_library_noise,
    }
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, runtime_env=env, **sizes)


def start_ray(config: RunConfig, own_instance: tuple[int, int] | None = None) -> None:
    """Start a local Ray instance, or join ``config.ray_address`` (else ``RAY_ADDRESS``),
    and check the client resources against its nodes; Flower's backend then reuses it.

    ``own_instance`` (CPUs, GPUs): start a new local instance of exactly that size
    whatever else runs here (a benchmark trial's share of its machine). A new
    instance's resources are checked before it starts, a cluster's once joined.
    """
    if own_instance is not None:
        check_client_resources(config.num_cpus, config.num_gpus, [{"CPU": own_instance[0], "GPU": own_instance[1]}])
        init_ray("local", num_cpus=own_instance[0], num_gpus=own_instance[1])
    else:  # "local", not Ray's default, which would join any cluster last started on this machine
        address = config.ray_address or os.environ.get("RAY_ADDRESS") or "local"
        if address == "local":
            check_client_resources(config.num_cpus, config.num_gpus, [local_node_resources()])
        init_ray(address)
    try:
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        check_client_resources(config.num_cpus, config.num_gpus, nodes)
    except Exception:
        ray.shutdown()
        raise


def run_simulation(
    config: RunConfig, *, client_app: ClientApp | None = None, server_app: ServerApp | None = None,
    own_instance: tuple[int, int] | None = None,
) -> None:  # fmt: skip
    """Simulate ``config.num_clients`` SuperNodes, one ClientApp each, on Ray.

    This is the engine that ``flwr run`` starts inside its ``flwr-simulation``
    process, driven directly so that no background SuperLink is left behind; the
    ServerApp receives ``config`` as its run config, as under ``flwr run``.
    ``client_app`` replaces relatlas's own ClientApp (tests inject faulty ones),
    ``server_app`` its ServerApp (a Flower user's own); ``own_instance``: see ``start_ray``.
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    start_ray(config, own_instance)

    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_mapping())
    with on_signals():  # SIGINT, SIGTERM: the ServerApp stops, then the engine (server/interruption.py)
        _run_simulation(
            num_supernodes=config.num_clients,
            exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
            client_app=client_app or default_client_app,
            server_app=server_app or default_server_app,
            backend_config={"client_resources": {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus}},
            server_app_context=context,
        )
