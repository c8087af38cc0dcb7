"""Run the ServerApp and ClientApps on Flower's simulation engine (Ray backend),
in this process, and tear everything down afterwards."""

from __future__ import annotations

import os

from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from clients.client_app import app as default_client_app
from server.config import RunConfig
from server.server_app import app as server_app


def run_simulation(
    config: RunConfig, *, client_cpus: float = 1.0, client_gpus: float = 0.0, client_app: ClientApp | None = None
) -> None:
    """Simulate ``config.num_clients`` SuperNodes, one ClientApp each, on Ray.

    This is the engine that ``flwr run`` starts inside its ``flwr-simulation``
    process, driven directly so that no background SuperLink is left behind; the
    ServerApp receives ``config`` as its run config, as under ``flwr run``.
    ``client_app`` replaces relatlas's own ClientApp (tests inject faulty ones).
    """
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_mapping())
    _run_simulation(
        num_supernodes=config.num_clients,
        exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
        client_app=client_app or default_client_app,
        server_app=server_app,
        backend_config={
            "client_resources": {"num_cpus": client_cpus, "num_gpus": client_gpus},
            "init_args": {"include_dashboard": False},
        },
        server_app_context=context,
    )
