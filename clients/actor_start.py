"""What a simulation's client actor does as its process starts (Ray's
``worker_process_setup_hook``, set where ``server/simulation.py`` starts Ray).

Flower starts the actors as the run starts, while the ServerApp sets up (reads the
data, opens the MLflow run), but an actor imports the ClientApp's module (torch and
Flower, 3.8 s at start-up: ``bench perf --sections startup``) only when its first
message arrives, and torch's compiler stack when it builds its first optimiser
(torch.optim wraps ``Optimizer.__init__`` in ``torch._disable_dynamo``, which
imports ``torch._dynamo`` on first use). Imported here, both overlap the server's
set-up instead of delaying the first round.
"""

from __future__ import annotations

import importlib

from relatlas.library_noise import quiet_library_noise

FIRST_MESSAGE_IMPORTS = ("relatlas.clients.client_app", "torch._dynamo")


def start_client_actor() -> None:
    """Quiet the libraries' noise, then import what the actor's first message needs."""
    quiet_library_noise()
    for module in FIRST_MESSAGE_IMPORTS:
        importlib.import_module(module)
