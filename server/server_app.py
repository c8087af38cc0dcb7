"""The Flower ServerApp: read the run config, run the federation."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from relatlas.server.algorithms import algorithm_of
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.federation import run_federation

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    logger = logging.getLogger("relatlas")
    if not logger.handlers:  # under `flwr run`; the relatlas CLI installs its own handler
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s relatlas: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config = RunConfig.from_mapping(context.run_config)
    if algorithm_of(config).server_app is not None:  # its ClientApp is not the one this app's SuperNodes run
        raise ConfigError(f"algorithm {config.algorithm} runs on the simulation engine (relatlas run); this app runs relatlas")
    run_federation(grid, config)
