"""Continual local training: one experience at a time with an Avalanche strategy.

Used by the ClientApp (one experience per federated round, the strategy rebuilt
each round from the model weights and the saved replay buffer) and by the
centralised single learner of ``relatlas bench continual`` (one strategy for the
whole stream).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from avalanche.benchmarks.scenarios.generic_scenario import CLScenario
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.logging import BaseLogger
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.training import device_for_worker
from relatlas.registries import REGULARIZERS, STRATEGIES

EVAL_BATCH = 1024


def head_accuracy_key(experience: int) -> str:
    """Avalanche's name for the accuracy on one test experience."""
    return f"Top1_Acc_Exp/eval_phase/test_stream/Exp{experience:03d}"


def build_strategy(
    model: nn.Module, config: ContinualConfig, *, seed: int, loggers: Sequence[BaseLogger] = ()
) -> SupervisedTemplate:
    """The registered strategy of ``config`` with its registered regulariser's plugins
    (seeded from the learner's ``seed``), and an evaluator that records accuracy and
    loss per experience."""
    plugins = list(REGULARIZERS.get(config.regularizer)(config, seed=seed))
    with warnings.catch_warnings():  # Avalanche warns when no logger is given; clients report metrics instead
        warnings.filterwarnings("ignore", "No loggers specified")
        evaluator = EvaluationPlugin(
            accuracy_metrics(experience=True, stream=True), loss_metrics(experience=True, stream=True), loggers=list(loggers)
        )
    common = dict(
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=config.batch_size,
        train_epochs=config.epochs,
        eval_mb_size=EVAL_BATCH,
        device=device_for_worker(),
        plugins=plugins,
        evaluator=evaluator,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    return STRATEGIES.get(config.strategy)(model, optimizer, config, **common)


@dataclass(frozen=True)
class ExperienceResult:
    """What one experience of training left: head accuracy on each test experience
    seen so far, Avalanche's last metrics, and the seconds spent training."""

    head_accuracy: list[float]
    avalanche_metrics: dict[str, float]
    train_seconds: float
    num_examples: int


def train_experience(strategy: SupervisedTemplate, benchmark: CLScenario, index: int, seed: int) -> ExperienceResult:
    """Train on experience ``index`` (skipped if this learner has no sample of it),
    then evaluate on test experiences ``0..index``. Seeded: same seed, same numbers."""
    experience = benchmark.train_stream[index]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        started = time.perf_counter()
        if len(experience.dataset) > 0:
            strategy.train(experience)
        seconds = time.perf_counter() - started
        strategy.eval(benchmark.test_stream[: index + 1])
    last = strategy.evaluator.get_last_metrics()
    scalars = {name: float(value) for name, value in last.items() if isinstance(value, (int, float))}
    return ExperienceResult([scalars[head_accuracy_key(j)] for j in range(index + 1)], scalars, seconds, len(experience.dataset))
