"""Federated algorithms, what ``relatlas run --algorithm NAME`` and ``relatlas.run``
start: one ``FederatedAlgorithm`` per entry of ``relatlas.registries.ALGORITHMS``.

An algorithm is a ClientApp and a ServerApp, driven by Flower's simulation engine
on Ray like any relatlas run (``server/simulation.py``), and the conditions it
puts on a run. ``relatlas``, the default, is relatlas's own run, unchanged; the
baselines (``server/algorithm_*.py``) run in the same harness: the same splits,
seeds, clients, MLflow logging and ``results.json`` fields. A user's own::

    from relatlas.registries import ALGORITHMS
    from relatlas.server.algorithms import FederatedAlgorithm

    ALGORITHMS.register("mine", FederatedAlgorithm(client_app=my_client_app, server_app=my_server_app))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

from relatlas.registries import ALGORITHMS
from relatlas.registry import split_spec
from relatlas.server.config import ConfigError, RunConfig


def _no_condition(config: RunConfig) -> None:
    """Any run config will do."""


@dataclass(frozen=True)
class FederatedAlgorithm:
    """The apps a run of the algorithm starts; ``None``: relatlas's own."""

    client_app: ClientApp | None = None
    server_app: ServerApp | None = None
    check: Callable[[RunConfig], None] = _no_condition
    """Refuse, with a ``ConfigError`` in one line, a run config the algorithm cannot run."""


relatlas = FederatedAlgorithm()


def algorithm_of(config: RunConfig) -> FederatedAlgorithm:
    """The run's algorithm, checked against the run config."""
    algorithm = ALGORITHMS.get(split_spec(config.algorithm)[0])
    try:
        algorithm.check(config)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"algorithm {config.algorithm}: {err}") from None
    return algorithm


def run_algorithm(config: RunConfig, algorithm: FederatedAlgorithm) -> None:
    """Run ``algorithm`` (``config``'s, from ``algorithm_of``) on Flower's simulation engine (``run_simulation``)."""
    from relatlas.server.simulation import run_simulation  # Ray and Flower's engine: only when a run starts

    run_simulation(config, client_app=algorithm.client_app, server_app=algorithm.server_app)


def run_algorithm_here(config: RunConfig, algorithm: FederatedAlgorithm) -> None:
    """Run ``algorithm`` in this process on a ``LocalGrid``: its ServerApp and ClientApps as
    ``run_algorithm`` runs them, without Ray (a benchmark of many small federations on one
    machine); the clients' state under ``out_dir/client-state``."""
    from relatlas.server.local_grid import LocalGrid  # relatlas's ClientApp: only when a run starts
    from relatlas.server.server_app import app as relatlas_server_app  # it imports this module

    grid = LocalGrid(config.num_clients, Path(config.out_dir) / "client-state", algorithm.client_app)
    context = Context(run_id=0, node_id=0, node_config={}, state=RecordDict(), run_config=config.to_mapping())
    (algorithm.server_app or relatlas_server_app)(grid, context)
