"""Local supervised training and embedding, shared by clients, the centralised
reference and the server's probes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.sources import LazyInputs, inputs_loader, is_array, pairs_loader
from relatlas.clients.models import Classifier, build_classifier
from relatlas.clients.precision import forward_autocast
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

    def order(self, device: torch.device | None = None) -> tuple[Tensor, ...]:
        """This epoch's batches of row indices, on ``device`` if given: drawn on the CPU, the same rows on every device."""
        permutation = torch.randperm(self.count, generator=self.generator)
        return (permutation if device is None else permutation.to(device)).split(self.batch_size)


def client_threads(num_cpus: float) -> int:
    """Torch threads for ``num-cpus``: a client's, and the centralised reference's that trains as one."""
    return max(1, int(num_cpus))


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` intra-op threads, then restore the process's count. The count
    changes float sums, so a computation that pins it gives the same numbers whatever ran before
    it in the process (an in-process client sets the count for its own training)."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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

    Arrays are sliced in memory (on a GPU with room for them, copied there once and sliced
    there: no host copy per batch, no host sync per step); other inputs are read through a ``DataLoader``
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
    resident = resident_arrays(x, y, device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed where the batches are: no host sync per step
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for _ in range(config.epochs):
        loss_sum.zero_()
        correct.zero_()
        for xb, yb in _epoch(x, y, batches, config.workers) if resident is None else _resident_epoch(*resident, batches):
            xb, yb = _to(xb, device), yb.to(device)
            with forward_autocast(device):  # bf16 under a precision_scope that casts; else nothing
                logits = model(xb)
                loss = loss_fn(logits, yb)
                total = loss if extra_loss is None else loss + extra_loss()
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(yb)  # as the float64 sum of loss.item() x rows it replaces
            correct += (logits.argmax(dim=1) == yb).sum()
        if after_epoch is not None:
            after_epoch()
    model.eval()
    return {"train_loss": loss_sum.item() / max(1, len(y)), "train_accuracy": correct.item() / max(1, len(y))}


def _epoch(x: Inputs, y: np.ndarray | Tensor, batches: SeededBatches, workers: int) -> Iterable[tuple[Any, Tensor]]:
    """One epoch's ``(inputs, labels)`` batches: sliced from arrays held whole, else read through a ``DataLoader``."""
    if not is_array(x):
        return pairs_loader(x, np.asarray(y), batches, workers)
    inputs, targets = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    return ((inputs[batch], targets[batch]) for batch in batches.order())


def resident_arrays(x: Inputs, y: np.ndarray | Tensor, device: torch.device) -> tuple[Tensor, Tensor] | None:
    """The training arrays copied onto ``device`` once, when it is a GPU with room for them
    (``fits_on_device``); else None, and each batch is copied on its own (the CPU path)."""
    if device.type != "cuda" or not is_array(x):
        return None
    inputs = torch.as_tensor(x, dtype=torch.float32)
    free, _ = torch.cuda.mem_get_info(device)
    if not fits_on_device(inputs.numel() * inputs.element_size() + len(y) * 8, free):
        return None
    return inputs.to(device), torch.as_tensor(y, dtype=torch.int64).to(device)


def fits_on_device(nbytes: int, free_bytes: int, share: float = 0.5) -> bool:
    """Whether ``nbytes`` of training data may live on a device with ``free_bytes`` free:
    at most ``share`` of it, the rest left to the model's activations and gradients."""
    return nbytes <= share * free_bytes


def _resident_epoch(inputs: Tensor, targets: Tensor, batches: SeededBatches) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch sliced on the device: the seeded permutation is copied over once per epoch, not once per batch."""
    for batch in batches.order(inputs.device):
        yield inputs[batch], targets[batch]


def _to(batch: Tensor | list[str], device: torch.device) -> Tensor | list[str]:
    """A batch on ``device``; a list of strings stays where it is (its encoder tokenises it)."""
    return batch.to(device) if isinstance(batch, Tensor) else batch


@torch.no_grad()
def predict(model: nn.Module, x: Inputs, batch_size: int = 1024, workers: int = 0) -> Tensor:
    """Apply ``model`` in evaluation mode, in batches, cast as an enclosing ``precision_scope`` says; returns CPU float32.
    Inputs not held as arrays (strings, ``LazyInputs``) are read through a ``DataLoader``."""
    device = device_for_worker()
    model.to(device).eval()
    with forward_autocast(device):
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
