"""Local supervised training and embedding, shared by clients, the centralised
reference and the server's probes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.benchmarks.datasets import Dataset
from relatlas.clients.models import Classifier, build_classifier
from relatlas.encoder_spec import EncoderSpec
from relatlas.sections import ModelSection


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0


def derive_seed(*parts: int) -> int:
    """A 31-bit seed determined by ``parts`` (run seed, client, round, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)


def device_for_worker() -> torch.device:
    """CUDA when this worker has a GPU, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    model: nn.Module, x: np.ndarray | Tensor, y: np.ndarray | Tensor, config: TrainConfig,
    after_epoch: Callable[[], None] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Train ``model`` with Adam and cross-entropy, reshuffling with a seeded generator.

    Returns the last epoch's mean loss and accuracy on the training data.
    ``after_epoch`` may raise to stop the training (the server's check for a signal).
    """
    device = device_for_worker()
    model.to(device).train()
    inputs = torch.as_tensor(x, dtype=torch.float32)
    targets = torch.as_tensor(y, dtype=torch.int64)
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum, correct = 0.0, 0
    for _ in range(config.epochs):
        loss_sum, correct = 0.0, 0
        for batch in torch.randperm(len(inputs), generator=generator).split(config.batch_size):
            xb, yb = inputs[batch].to(device), targets[batch].to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(batch)
            correct += int((logits.argmax(dim=1) == yb).sum())
        if after_epoch is not None:
            after_epoch()
    model.eval()
    return {"train_loss": loss_sum / max(1, len(inputs)), "train_accuracy": correct / max(1, len(inputs))}


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray | Tensor, batch_size: int = 1024) -> Tensor:
    """Apply ``model`` in evaluation mode, in batches; returns CPU float32 outputs."""
    device = device_for_worker()
    model.to(device).eval()
    if isinstance(x, np.ndarray) and not x.flags.writeable:
        x = x.copy()  # arrays decoded from a Flower message are read-only, which torch warns about
    inputs = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([model(chunk.to(device)).float().cpu() for chunk in inputs.split(batch_size)])


def train_like_client(settings: ModelSection, seed: int, data: Dataset, local: np.ndarray, partition: int) -> Classifier:
    """Client ``partition``'s model after its first static round, with the encoder
    and seeds the ClientApp uses (``settings``: the run's model section, or its
    ``RunConfig``): the offline stand-in that benchmarks compare the federation with."""
    model = build_classifier(
        data.input_shape, data.num_classes, embedding_dim=settings.embedding_dim,
        encoder=EncoderSpec.for_client(settings.encoder, partition), seed=derive_seed(seed, partition),
    )  # fmt: skip
    train = TrainConfig(settings.epochs, settings.batch_size, settings.learning_rate, derive_seed(seed, partition, 1))
    fit(model, data.x_train[local], data.y_train[local], train)
    return model
