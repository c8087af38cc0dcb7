"""The built-in continual strategies and regularisers, entries of
``relatlas.registries.STRATEGIES`` and ``REGULARIZERS``.

A strategy is ``(model, optimizer, config, **common) -> SupervisedTemplate``, where
``common`` holds the criterion, minibatch sizes, epochs, device, plugins and
evaluator every strategy shares; a regulariser is ``(config, *, seed) -> plugins``
(Avalanche plugins, seeded from the learner's ``seed``). A user's entry registers
the same way, e.g. ``STRATEGIES.register("gem", my_module.gem)``.
"""

from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from avalanche.training import DER, ER_ACE, Naive, Replay
from avalanche.training.templates import SupervisedTemplate
from torch import nn

from relatlas.benchmarks.casper import CaSpeRPlugin
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.training import derive_seed

CASPER_STREAM = 30_000  # seed stream of CaSpeR's graph batches, apart from training's


def naive(model: nn.Module, optimizer: torch.optim.Optimizer, config: ContinualConfig, **common: Any) -> SupervisedTemplate:
    """Fine-tuning on each experience in turn: the forgetting baseline."""
    return Naive(model=model, optimizer=optimizer, **common)


def replay(model: nn.Module, optimizer: torch.optim.Optimizer, config: ContinualConfig, **common: Any) -> SupervisedTemplate:
    """Experience replay from Avalanche's experience-balanced buffer of ``config.buffer``
    samples: an equal share per experience seen, a reservoir sample within each."""
    return Replay(model=model, optimizer=optimizer, mem_size=config.buffer, **common)


def er_ace(model: nn.Module, optimizer: torch.optim.Optimizer, config: ContinualConfig, **common: Any) -> SupervisedTemplate:
    """ER with asymmetric cross-entropy, replaying ``config.batch_size`` buffer samples per step."""
    return ER_ACE(model=model, optimizer=optimizer, mem_size=config.buffer, batch_size_mem=config.batch_size, **common)


def der(model: nn.Module, optimizer: torch.optim.Optimizer, config: ContinualConfig, **common: Any) -> SupervisedTemplate:
    """Dark experience replay: the buffer keeps logits as well as labels."""
    return DER(model=model, optimizer=optimizer, mem_size=config.buffer, batch_size_mem=config.batch_size, **common)


def no_regularizer(config: ContinualConfig, *, seed: int) -> list[SupervisedPlugin]:
    return []


def casper(config: ContinualConfig, *, seed: int) -> list[SupervisedPlugin]:
    """CaSpeR's spectral loss on graph batches from a class-balanced reservoir of its
    own (``benchmarks/casper.py``); ``p`` is ``config.casper_classes``, or if 0 the
    classes the stream gives each experience."""
    seed = derive_seed(seed, CASPER_STREAM)
    classes = config.casper_classes or config.experience_classes
    if not classes:
        raise ValueError(
            "regularizer casper needs its p: set casper_classes, or the stream's experience_classes "
            "(ContinualConfig.from_sections(model, continual, schedule) fills them)"
        )
    return [CaSpeRPlugin(config.casper_rho, classes, config.casper_batch, config.casper_k, seed=seed)]
