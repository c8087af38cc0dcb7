"""HtFLlib's usual heterogeneous setting as a named relatlas run, for any ``--algorithm``.

HtFLlib (github.com/TsingZ0/HtFLlib, the heterogeneous-FL library and benchmark) deals each class's samples over 20 clients in
proportions drawn from Dirichlet(0.1) and gives the clients different encoders
(its HtFE-img families: a CNN and ResNets). Here: relatlas's ``dirichlet`` split
(the same per-class Dirichlet deal) and the registered image encoders cycled,
``mlp, cnn, resnet8, resnet20``, on Fashion-MNIST.

Shrunk to fit a 2-core machine: 5 rounds, not HtFLlib's 1,000-2,000 (each round
trains 20 clients on CPU); 64-dimensional embeddings, not 512 (the prototypes and
heads stay small); batches of 64, not 10 (ten times fewer optimiser steps per
epoch); ResNet-8 and -20, not ResNet-18 to -152; 2,000 evaluation samples, not the
whole test set. One local epoch per round and all clients every round, as HtFLlib.
"""

from __future__ import annotations

from typing import Any

from relatlas.server.config import RunConfig

HTFL: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "split": "dirichlet",
    "alpha": 0.1,
    "num-clients": 20,
    "min-clients": 20,
    "encoder": "mlp,cnn,resnet8,resnet20",
    "embedding-dim": 64,
    "rounds": 5,
    "epochs": 1,
    "batch-size": 64,
    "eval-samples": 2000,
}
"""HtFLlib's setting, shrunk (above), as run-config keys."""


def htfl_config(**overrides: Any) -> RunConfig:
    """The setting as a ``RunConfig``, with ``overrides`` (run-config keys, ``{"algorithm": "fedproto"}``) on top."""
    return RunConfig.from_mapping(HTFL | overrides)
