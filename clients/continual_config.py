"""How a continual learner trains on each experience: a plain dataclass, apart
from the Avalanche strategies, so the run config can read its defaults without
importing Avalanche or torch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContinualConfig:
    """How a learner trains on each experience."""

    strategy: str = "replay"
    regularizer: str = "none"
    buffer: int = 200
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    casper_rho: float = 0.01
    casper_classes: int = 0  # 0: the classes of the experience being trained
    casper_batch: int = 0  # 0: batch_size
    casper_k: int = 10

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ContinualConfig:
        """Pick this config's keys (hyphenated, as in a run config) out of ``values``."""
        return cls(**{f.name: values[f.name.replace("_", "-")] for f in dataclasses.fields(cls)})
