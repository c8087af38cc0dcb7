"""Local supervised training and embedding, shared by clients, the centralised
reference and the server's probes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.sources import LazyInputs, inputs_loader, is_array, pairs_loader
from relatlas.clients.models import Classifier, build_classifier
from relatlas.clients.text_encoders import fit_to_inputs
from relatlas.encoder_spec import EncoderSpec
from relatlas.sections import ModelSection

Inputs = np.ndarray | Tensor | LazyInputs | Sequence[Any]  # numbers held whole, strings, or rows read on demand


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    workers: int = 0  # DataLoader processes for inputs not held as arrays (``sources.loader_workers``)


@dataclass(frozen=True)
class SeededBatches:
    """Each epoch's batches: a seeded permutation cut into ``batch_size`` rows, the order both paths of ``fit`` take."""

    count: int
    batch_size: int
    generator: torch.Generator

    def __iter__(self) -> Iterator[list[int]]:
        # a generator: the permutation is drawn at the first batch, not when an iterator is made
        # (a multi-process DataLoader makes one and drops it, which must not advance the seed)
        for batch in self.order():
            yield batch.tolist()

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def order(self) -> tuple[Tensor, ...]:
        return torch.randperm(self.count, generator=self.generator).split(self.batch_size)


def derive_seed(*parts: int) -> int:
    """A 31-bit seed determined by ``parts`` (run seed, client, round, ...)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] & 0x7FFFFFFF)


def device_for_worker() -> torch.device:
    """CUDA when this worker has a GPU, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def fit(
    model: nn.Module, x: Inputs, y: np.ndarray | Tensor, config: TrainConfig,
    after_epoch: Callable[[], None] | None = None, extra_loss: Callable[[], Tensor] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Train ``model`` with Adam and cross-entropy, reshuffling with a seeded generator.

    Arrays are sliced in memory; other inputs are read through a ``DataLoader``
    (``config.workers`` processes) in the same seeded batches, so both give the same numbers.
    Returns the last epoch's mean loss and accuracy on the training data.
    ``after_epoch`` may raise to stop the training (the server's check for a signal).
    A part of the model fitted to its inputs (a TF-IDF vocabulary) is fitted on ``x`` first, once.
    ``extra_loss``, if given, is added to every step's loss (the atlas feedback, drawing its own
    batches); the reported loss stays the cross-entropy.
    """
    fit_to_inputs(model, x)
    device = device_for_worker()
    model.to(device).train()
    batches = SeededBatches(len(y), config.batch_size, torch.Generator().manual_seed(config.seed))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    loss_sum, correct = 0.0, 0
    for _ in range(config.epochs):
        loss_sum, correct = 0.0, 0
        for xb, yb in _epoch(x, y, batches, config.workers):
            xb, yb = _to(xb, device), yb.to(device)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            optimizer.zero_grad()
            (loss if extra_loss is None else loss + extra_loss()).backward()
            optimizer.step()
            loss_sum += loss.item() * len(yb)
            correct += int((logits.argmax(dim=1) == yb).sum())
        if after_epoch is not None:
            after_epoch()
    model.eval()
    return {"train_loss": loss_sum / max(1, len(y)), "train_accuracy": correct / max(1, len(y))}


def _epoch(x: Inputs, y: np.ndarray | Tensor, batches: SeededBatches, workers: int) -> Iterable[tuple[Any, Tensor]]:
    """One epoch's ``(inputs, labels)`` batches: sliced from arrays held whole, else read through a ``DataLoader``."""
    if not is_array(x):
        return pairs_loader(x, np.asarray(y), batches, workers)
    inputs, targets = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    return ((inputs[batch], targets[batch]) for batch in batches.order())


def _to(batch: Tensor | list[str], device: torch.device) -> Tensor | list[str]:
    """A batch on ``device``; a list of strings stays where it is (its encoder tokenises it)."""
    return batch.to(device) if isinstance(batch, Tensor) else batch


@torch.no_grad()
def predict(model: nn.Module, x: Inputs, batch_size: int = 1024, workers: int = 0) -> Tensor:
    """Apply ``model`` in evaluation mode, in batches; returns CPU float32 outputs.
    Inputs not held as arrays (strings, ``LazyInputs``) are read through a ``DataLoader``."""
    device = device_for_worker()
    model.to(device).eval()
    if not is_array(x):
        return torch.cat([model(_to(chunk, device)).float().cpu() for chunk in inputs_loader(x, batch_size, workers)])
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
