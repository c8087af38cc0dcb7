"""``--algorithm local``: each client trains alone and receives nothing; scored as
every algorithm's clients are (``server/algorithm_strategy.py``)."""

from __future__ import annotations

from collections.abc import Mapping

from flwr.app import ArrayRecord
from flwr.serverapp import Grid

from relatlas.clients.algorithm_local import app as client_app
from relatlas.server.algorithm_strategy import Records, baseline_server_app, check_baseline
from relatlas.server.algorithms import FederatedAlgorithm
from relatlas.server.config import RunConfig
from relatlas.server.run_setup import RunSetup


class LocalServer:
    """Sends nothing and aggregates nothing."""

    reply_records: tuple[str, ...] = ()

    def __init__(self, config: RunConfig, setup: RunSetup) -> None:
        pass

    def configure(self, server_round: int, nodes: list[int], grid: Grid) -> dict[int, Records]:
        return {}

    def check_reply(self, records: Mapping[str, ArrayRecord]) -> None:
        pass

    def aggregate(self, server_round: int, replies: Mapping[int, Mapping[str, ArrayRecord]], sizes: Mapping[int, int]) -> dict:
        return {}


local = FederatedAlgorithm(client_app, baseline_server_app(LocalServer), check_baseline)
