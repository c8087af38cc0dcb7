"""Task embedders with a linear head: an MLP for flat or tiny inputs, a small
CNN for 28x28 and 32x32 images."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

Encoder = Literal["auto", "mlp", "cnn"]


class Classifier(nn.Module):
    """An embedder followed by a linear head; the embedder's output is the latent space."""

    def __init__(self, embedder: nn.Module, embedding_dim: int, num_classes: int) -> None:
        super().__init__()
        self.embedder = embedder
        self.head = nn.Linear(embedding_dim, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embedder(x))


def mlp(input_dim: int, hidden_dim: int, output_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, output_dim))


def small_cnn(channels: int, side: int, embedding_dim: int) -> nn.Sequential:
    """Two conv-pool stages then a linear map to the embedding."""
    features = 64 * (side // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(features, embedding_dim),
    )  # fmt: skip


def build_classifier(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    embedding_dim: int = 64,
    encoder: Encoder = "auto",
    hidden_dim: int = 256,
    seed: int = 0,
) -> Classifier:
    """The encoder for an input shape: ``auto`` picks the CNN for [C, H, W] inputs
    with H = W >= 28, the MLP otherwise. Weights are initialised from ``seed``
    alone, whatever ran before in this process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(input_shape, num_classes, embedding_dim, encoder, hidden_dim)


def takes_cnn(input_shape: tuple[int, ...]) -> bool:
    """Whether the CNN fits the input: [C, H, W] images with H = W >= 28."""
    return len(input_shape) == 3 and input_shape[1] == input_shape[2] and input_shape[1] >= 28


def _build(input_shape: tuple[int, ...], num_classes: int, embedding_dim: int, encoder: Encoder, hidden_dim: int) -> Classifier:
    is_image = takes_cnn(input_shape)
    kind = ("cnn" if is_image else "mlp") if encoder == "auto" else encoder
    if kind == "cnn":
        if not is_image:
            raise ValueError(f"the cnn encoder needs [C, H, W] images with H = W >= 28, got input shape {input_shape}")
        embedder = small_cnn(input_shape[0], input_shape[1], embedding_dim)
    elif kind == "mlp":
        embedder = mlp(math.prod(input_shape), hidden_dim, embedding_dim)
    else:
        raise ValueError(f"unknown encoder {encoder!r}; choose auto, mlp or cnn")
    return Classifier(embedder, embedding_dim, num_classes)
