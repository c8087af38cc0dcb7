"""How a continual learner trains on each experience: settings only, so nothing
here imports Avalanche. The defaults are the run config's (``relatlas.sections``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relatlas.sections import ContinualSection, ModelSection


@dataclass(frozen=True)
class ContinualConfig:
    """A strategy and a regulariser of ``relatlas.registries`` (STRATEGIES, REGULARIZERS), and their settings."""

    strategy: str = ContinualSection.strategy
    regularizer: str = ContinualSection.regularizer
    buffer: int = ContinualSection.buffer
    epochs: int = 1
    batch_size: int = ModelSection.batch_size
    learning_rate: float = ModelSection.learning_rate
    casper_rho: float = ContinualSection.casper_rho
    casper_classes: int = ContinualSection.casper_classes  # 0: experience_classes
    casper_batch: int = ContinualSection.casper_batch  # 0: batch_size
    casper_k: int = ContinualSection.casper_k
    experience_classes: tuple[int, ...] = ()  # how many classes the stream gives each experience

    @classmethod
    def from_sections(
        cls, model: ModelSection, continual: ContinualSection, schedule: Sequence[Sequence[int]] = ()
    ) -> ContinualConfig:
        """The learner a run's model and continual sections describe (a ``RunConfig``
        is both), on a stream of the class ``schedule`` (``streams.class_schedule``)."""
        return cls(
            strategy=continual.strategy, regularizer=continual.regularizer, buffer=continual.buffer,
            epochs=model.epochs, batch_size=model.batch_size, learning_rate=model.learning_rate,
            casper_rho=continual.casper_rho, casper_classes=continual.casper_classes,
            casper_batch=continual.casper_batch, casper_k=continual.casper_k,
            experience_classes=tuple(len(classes) for classes in schedule),
        )  # fmt: skip
