"""The Flower ServerApp: read the run config, run the federation."""

from __future__ import annotations

import logging

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from relatlas.server.config import RunConfig
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
    run_federation(grid, RunConfig.from_mapping(context.run_config))
