"""The built-in encoders, registered in ``relatlas.registries.ENCODERS``.

Each is ``(input_shape, embedding_dim, **options) -> nn.Module``: the embedder a
client trains, whose output is its latent space: a finite ``[batch, embedding_dim]``
for a ``[batch, *input_shape]`` input (``check_encoders`` refuses anything else
before a run starts). ``mlp`` fits any input, ``cnn`` 28x28 and larger square
images, ``resnet8`` and ``resnet20`` (CIFAR-style residual nets, He et al. 2016,
section 4.2) any [C, H, W] image. A user's encoder registers the same way::

    @ENCODERS.register("theirs")
    def theirs(input_shape, embedding_dim, **options) -> nn.Module: ...
"""

from __future__ import annotations

import math

from torch import Tensor, nn

RESNET_WIDTHS = (16, 32, 64)  # channels of the three stages; the second and third halve the resolution


def takes_cnn(input_shape: tuple[int, ...]) -> bool:
    """Whether the CNN fits the input: [C, H, W] images with H = W >= 28."""
    return len(input_shape) == 3 and input_shape[1] == input_shape[2] and input_shape[1] >= 28


def auto(input_shape: tuple[int, ...], embedding_dim: int, **options: int) -> nn.Module:
    """The CNN for [C, H, W] images with H = W >= 28, the MLP otherwise."""
    return (cnn if takes_cnn(input_shape) else mlp)(input_shape, embedding_dim, **options)


def mlp(input_shape: tuple[int, ...], embedding_dim: int, *, hidden: int = 256) -> nn.Sequential:
    """Flatten, one hidden ReLU layer of ``hidden`` units, linear to the embedding."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, embedding_dim)
    )  # fmt: skip


def cnn(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Sequential:
    """Two conv-pool stages then a linear map to the embedding."""
    if not takes_cnn(input_shape):
        raise ValueError(f"the cnn encoder needs [C, H, W] images with H = W >= 28, got input shape {input_shape}")
    channels, side = input_shape[0], input_shape[1]
    features = 64 * (side // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(features, embedding_dim),
    )  # fmt: skip


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (a 1x1 conv-BN where the shape changes)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(outputs), nn.ReLU(),
            nn.Conv2d(outputs, outputs, 3, padding=1, bias=False), nn.BatchNorm2d(outputs),
        )  # fmt: skip
        self.shortcut = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: Tensor) -> Tensor:
        return (self.residual(x) + self.shortcut(x)).relu()


def resnet(input_shape: tuple[int, ...], embedding_dim: int, blocks: int) -> nn.Sequential:
    """A 3x3 conv-BN stem, three stages of ``blocks`` basic blocks (widths
    ``RESNET_WIDTHS``), global average pooling, linear to the embedding:
    6 * blocks + 2 layers. Pooling makes it fit any image size."""
    if len(input_shape) != 3:
        raise ValueError(f"the resnet encoders need [C, H, W] images, got input shape {input_shape}")
    stem = RESNET_WIDTHS[0]
    layers: list[nn.Module] = [nn.Conv2d(input_shape[0], stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
    inputs = stem
    for stage, width in enumerate(RESNET_WIDTHS):
        for block in range(blocks):
            layers.append(BasicBlock(inputs, width, stride=2 if stage > 0 and block == 0 else 1))
            inputs = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, embedding_dim))


def resnet8(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Sequential:
    """ResNet-8: one basic block per stage, about 81 thousand parameters (1 channel, 64 wide)."""
    return resnet(input_shape, embedding_dim, blocks=1)


def resnet20(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Sequential:
    """ResNet-20: three basic blocks per stage, about 0.28 million parameters (1 channel, 64 wide)."""
    return resnet(input_shape, embedding_dim, blocks=3)
