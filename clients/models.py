"""A client's model: the encoder its spec names (``relatlas/encoder_spec.py``,
registered in ``relatlas.registries.ENCODERS``) followed by a linear head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relatlas.encoder_spec import EncoderSpec


class Classifier(nn.Module):
    """An embedder followed by a linear head; the embedder's output is the latent space."""

    def __init__(self, embedder: nn.Module, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedder = embedder
        self.head = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embedder(x))


def build_classifier(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    embedding_dim: int = 64,
    encoder: str | EncoderSpec = "auto",
    seed: int = 0,
) -> Classifier:
    """The classifier of one encoder spec (``"mlp:hidden=128:dim=32"``), whose
    ``dim`` overrides ``embedding_dim``. Weights are initialised from ``seed``
    alone, whatever ran before in this process: embedder first, then the head."""
    spec = encoder if isinstance(encoder, EncoderSpec) else EncoderSpec.parse(encoder)
    factory = spec.entry()
    width = spec.width(embedding_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Classifier(factory(tuple(input_shape), width, **dict(spec.options)), width, num_classes)


def check_encoders(encoders: str, inputs: Tensor, embedding_dim: int) -> None:
    """Build each of a run's specs for the dataset's inputs and embed ``inputs`` (a
    batch of them), so an encoder that cannot take them (``cnn`` on flat digits) or
    returns anything but a finite ``[batch, width]`` fails in one line before any
    client starts, not as a shape error deep inside a client's training."""
    for spec in EncoderSpec.parse_list(encoders):
        model = build_classifier(tuple(inputs.shape[1:]), 2, embedding_dim=embedding_dim, encoder=spec)
        with torch.no_grad():
            embedded = model.eval().embedder(inputs)
        _check_embeddings(spec, embedded, len(inputs), spec.width(embedding_dim))


def _check_embeddings(spec: EncoderSpec, embedded: object, batch: int, width: int) -> None:
    """An encoder's output must be a finite ``[batch, width]`` tensor: the head, the
    anchors and the relative projection all take it so."""
    expected = f"expected a finite [{batch}, {width}] tensor ([batch, dim or embedding-dim])"
    if not isinstance(embedded, Tensor):
        raise ValueError(f"encoder {str(spec)!r} returned a {type(embedded).__name__} for a batch of {batch}; {expected}")
    if tuple(embedded.shape) != (batch, width):
        raise ValueError(f"encoder {str(spec)!r} returned {list(embedded.shape)} for a batch of {batch}; {expected}")
    if not torch.isfinite(embedded).all():
        raise ValueError(f"encoder {str(spec)!r} returned non-finite values for a batch of {batch}; {expected}")


def parameter_count(module: nn.Module) -> int:
    """Trainable numbers in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
