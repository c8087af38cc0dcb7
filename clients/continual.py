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
from avalanche.training import DER, ER_ACE, Naive, Replay
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from relatlas.benchmarks.casper import CaSpeRPlugin
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.training import derive_seed, device_for_worker
from torch import nn

STRATEGIES = ("naive", "replay", "er-ace", "der")
REGULARIZERS = ("none", "casper")
EVAL_BATCH = 1024
CASPER_STREAM = 30_000  # seed stream of CaSpeR's graph batches, apart from training's


def head_accuracy_key(experience: int) -> str:
    """Avalanche's name for the accuracy on one test experience."""
    return f"Top1_Acc_Exp/eval_phase/test_stream/Exp{experience:03d}"


def build_strategy(
    model: nn.Module, config: ContinualConfig, *, seed: int, loggers: Sequence[BaseLogger] = ()
) -> SupervisedTemplate:
    """The Avalanche strategy of ``config``, with CaSpeR attached if asked (its
    generator seeded from the learner's ``seed``), and an evaluator that records
    accuracy and loss per experience."""
    plugins = []
    if config.regularizer == "casper":
        casper = CaSpeRPlugin(
            config.casper_rho, config.casper_classes, config.casper_batch, config.casper_k, seed=derive_seed(seed, CASPER_STREAM)
        )
        plugins.append(casper)
    elif config.regularizer != "none":
        raise ValueError(f"unknown regularizer {config.regularizer!r}; choose from {', '.join(REGULARIZERS)}")
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
    if config.strategy == "naive":
        return Naive(model=model, optimizer=optimizer, **common)
    if config.strategy == "replay":
        return Replay(model=model, optimizer=optimizer, mem_size=config.buffer, **common)
    if config.strategy == "er-ace":
        return ER_ACE(model=model, optimizer=optimizer, mem_size=config.buffer, batch_size_mem=config.batch_size, **common)
    if config.strategy == "der":
        return DER(model=model, optimizer=optimizer, mem_size=config.buffer, batch_size_mem=config.batch_size, **common)
    raise ValueError(f"unknown strategy {config.strategy!r}; choose from {', '.join(STRATEGIES)}")


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
