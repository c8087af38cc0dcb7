"""A client's model: the encoder its spec names (``relatlas/encoder_spec.py``,
registered in ``relatlas.registries.ENCODERS``) followed by a linear head."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relatlas.encoder_spec import TENSOR, TEXT, EncoderSpec, encoder_input_kind
from relatlas.registries import ENCODERS
from relatlas.registry import RegistryError


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


def check_encoders(encoders: str, inputs: Tensor | list[str], embedding_dim: int) -> None:
    """Build each of a run's specs for the dataset's inputs and embed ``inputs`` (a
    batch of them: a tensor, or a list of strings), so an encoder that cannot take
    them (``cnn`` on flat digits, ``mlp`` on text) or returns anything but a finite
    ``[batch, width]`` fails in one line before any client starts, not as a shape
    error deep inside a client's training."""
    kind = TEXT if isinstance(inputs, list) else TENSOR
    for spec in EncoderSpec.parse_list(encoders):
        _check_input_kind(spec, kind)
        shape = () if kind == TEXT else tuple(inputs.shape[1:])
        model = build_classifier(shape, 2, embedding_dim=embedding_dim, encoder=spec)
        with torch.no_grad():
            embedded = model.eval().embedder(inputs)
        _check_embeddings(spec, embedded, len(inputs), spec.width(embedding_dim))


def _check_input_kind(spec: EncoderSpec, kind: str) -> None:
    """Refuse an encoder that takes another kind of input than the data holds, naming those that fit."""
    if encoder_input_kind(spec.entry()) == kind:
        return
    fitting = ", ".join(name for name in ENCODERS.names() if _input_kind_of(name) == kind)
    raise ValueError(
        f"encoder {str(spec)!r} takes {encoder_input_kind(spec.entry())} inputs, the dataset holds {kind}; encoders for "
        f"{kind}: {fitting or f'none registered (register one whose factory sets input_kind = {kind!r})'}"
    )


def _input_kind_of(name: str) -> str | None:
    """What the registered encoder ``name`` takes; ``None`` if it cannot be loaded here."""
    try:
        return encoder_input_kind(ENCODERS.get(name))
    except RegistryError:
        return None


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
