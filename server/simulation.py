"""Run the ServerApp and ClientApps on Flower's simulation engine (Ray backend),
in this process, and tear everything down afterwards.

Ray is started here (or joined, with ``ray-address`` or ``RAY_ADDRESS``) rather
than by Flower, so that client resources no node can give are refused in one
line instead of leaving Flower with an empty actor pool.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence

import psutil
import ray
from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.simulation.run_simulation import _run_simulation
from flwr.supercore.telemetry import EventType

from relatlas.clients.actor_start import start_client_actor
from relatlas.clients.client_app import app as default_client_app
from relatlas.library_noise import quiet_library_noise
from relatlas.sections import NODE_DATA, client_data_specs
from relatlas.server import interruption
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.interruption import Interrupted, on_signals
from relatlas.server.ray_checks import check_ray_address, local_node_resources
from relatlas.server.ray_session import apart
from relatlas.server.server_app import app as default_server_app

POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 10.0  # after a signal: the ServerApp records the interruption and Flower's engine stops
CLIENT_ACTOR = "ray::ClientAppActor"  # the process title of Flower's actors on Ray, idle or running a ClientApp


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
    with the libraries' noise quieted and the ClientApp imported (``clients/actor_start.py``)."""
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's coming default; silences its warning
    quiet_library_noise()  # after this module's Flower imports, which turn every DeprecationWarning on
    check_ray_address(address)  # a cluster where nothing listens: refused now, not after minutes inside ray.init
    env = {
        "env_vars": {"PYTHONPATH": os.pathsep.join([*sys.path, os.environ.get("PYTHONPATH", "")])},
        "worker_process_setup_hook": start_client_actor,  # imports the ClientApp while the server sets up
    }
    # A new local instance starts no idle workers ahead of need: a federation's clients are actors,
    # each with a process of its own, so a prestarted worker only costs its start (0.4 CPU s measured)
    no_prestart = {"enable_worker_prestart": False, "prestart_worker_first_driver": False}
    own = {"_system_config": no_prestart} if address == "local" else {}
    on_sigterm = signal.getsignal(signal.SIGTERM)
    with apart():  # a signal to the run's process group is this process's to handle (server/ray_session.py)
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, runtime_env=env, **own, **sizes)
    signal.signal(signal.SIGTERM, on_sigterm)  # ray.init's handler would exit(15) wherever the main thread is


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
    if NODE_DATA in client_data_specs(config.client_data):
        raise ConfigError(f"client-data {NODE_DATA} reads each SuperNode's node config; simulated clients have none")
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_mapping())
    with on_signals():  # SIGINT, SIGTERM: the ServerApp stops, then the engine (server/interruption.py)
        interruption.check()  # one that came during `relatlas run`'s start-up: Ray is not started
        start_ray(config, own_instance)
        if interruption.received():  # during Ray's start
            ray.shutdown()
            interruption.check()
        stopped: list[Interrupted] = []
        drive_engine(
            lambda: _run_simulation(
                num_supernodes=config.num_clients,
                exit_event=EventType.PYTHON_API_RUN_SIMULATION_LEAVE,
                client_app=client_app or default_client_app,
                server_app=_returning_on_interruption(server_app or default_server_app, stopped),
                backend_config={"client_resources": {"num_cpus": config.num_cpus, "num_gpus": config.num_gpus}},
                server_app_context=context,
            )
        )
        if stopped:
            raise stopped[0]


def _returning_on_interruption(server_app: ServerApp, stopped: list[Interrupted]) -> ServerApp:
    """``server_app``, returning when interrupted, the ``Interrupted`` put in ``stopped``
    (Flower waits 3 s for the context of a ServerApp that raised)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            server_app(grid, context)
        except Interrupted as err:
            stopped.append(err)

    return app


def drive_engine(engine: Callable[[], object]) -> None:
    """Run Flower's engine in a thread while the main thread waits in short steps,
    so that it handles a signal at once (an untimed wait would hold the handler
    back until the clients' tasks in progress end, which under load is minutes).

    After a signal, the clients' actors are killed (no reply of theirs counts any
    more, and Flower would wait for each task in progress) and the engine gets
    ``STOP_GRACE_SECONDS`` to stop; ``Interrupted`` is raised unless the run
    completed before the signal took effect, with ``engine_running`` set if the
    engine has not stopped (the process can only end by ``os._exit`` then).
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            engine()
        except BaseException as err:  # noqa: BLE001 - raised again in the main thread
            failure.append(err)

    thread = threading.Thread(target=run, name="relatlas-engine", daemon=True)
    thread.start()
    while thread.is_alive() and not interruption.received():
        thread.join(POLL_SECONDS)
    if interruption.received():
        flower_log = logging.getLogger("flwr")
        level = flower_log.level
        flower_log.setLevel(logging.CRITICAL)  # its reports of the actors stopped here are noise
        stop_local_client_actors()
        thread.join(STOP_GRACE_SECONDS)
        flower_log.setLevel(level)
    if failure:
        if interruption.received() and not isinstance(failure[0], Interrupted):
            interruption.check()  # a failure of the stopping (its actors killed): the signal is the cause
        raise failure[0]
    if thread.is_alive():  # past the grace, Flower still waits for its clients (a joined cluster's actors)
        try:
            interruption.check()
        except Interrupted as err:
            err.engine_running = True
            raise


def stop_local_client_actors() -> None:
    """Kill the ClientApp actors of the Ray instance this process started (a
    joined cluster's are not its to kill); Ray then fails their tasks at once."""
    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith(CLIENT_ACTOR):
                process.kill()
        except psutil.Error:  # gone already
            continue
