"""The centralised reference (simulation only): one model trained on the union
of all clients' data, kept in step with the clients round by round."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from relatlas.aggregation.projection import relative_subspaces
from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.splits import FederationPlan
from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, derive_seed, fit, predict, torch_threads
from relatlas.encoder_spec import EncoderSpec
from relatlas.server import interruption

CENTRAL_ID = 10_000  # seed stream of the centralised model, apart from the clients'


class CentralizedReference:
    """End-to-end model on every client's samples, trained ``epochs`` per round on ``threads``
    torch threads (a client's count), whatever the process's count: the same seed, the same numbers."""

    def __init__(
        self, dataset: Dataset, plan: FederationPlan, *, embedding_dim: int, encoder: str | EncoderSpec, train: TrainConfig,
        threads: int,
    ) -> None:  # fmt: skip
        self.indices = np.unique(np.concatenate(plan.client_indices))
        self.dataset = dataset
        self.train = train
        self.threads = threads
        self.model = build_classifier(
            dataset.input_shape,
            dataset.num_classes,
            embedding_dim=embedding_dim,
            encoder=encoder,
            seed=derive_seed(train.seed, CENTRAL_ID),
        )

    def train_round(self, round_number: int) -> None:
        config = TrainConfig(
            epochs=self.train.epochs,
            batch_size=self.train.batch_size,
            learning_rate=self.train.learning_rate,
            seed=derive_seed(self.train.seed, CENTRAL_ID, round_number),
            workers=self.train.workers,
        )
        x, y = self.dataset.x_train[self.indices], self.dataset.y_train[self.indices]
        with torch_threads(self.threads):
            fit(self.model, x, y, config, after_epoch=interruption.check)  # it trains while the clients do: a signal stops it

    def spaces(self, anchors: np.ndarray, samples: np.ndarray, similarities: tuple[str, ...]) -> dict[str, Tensor]:
        """Relative subspaces of ``samples``, as a client would send them."""
        embedder = self.model.embedder
        with torch_threads(self.threads):
            return relative_subspaces(predict(embedder, samples), predict(embedder, anchors), similarities)
