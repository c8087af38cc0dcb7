"""Pretrained torchvision backbones from local weight files: the ``torchvision``
encoder of ``relatlas.registries.ENCODERS``.

``torchvision:arch=resnet18:weights=/models/resnet18.pt[:backbone=frozen|finetune][:size=SIDE][:dim=D]``
builds torchvision's architecture ``arch`` with random weights (torchvision's
``weights=`` is never passed: nothing downloads), loads the state-dict file
``weights`` into it, replaces its classifier (the architecture's last linear
layer, whose weights in the file are ignored) by a linear projection to the
client's embedding, and puts the backbone's input transform in front:

- ``backbone=frozen`` (default): the backbone stays fixed and only the projection
  trains; its features are computed once per input and cached
  (``clients/frozen_backbone.py``);
- ``backbone=finetune``: the backbone trains with the projection.

Data inputs must be [1 or 3, H, W] images in [0, 1] (as ``load_dataset`` gives them).
"""

from __future__ import annotations

import hashlib

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional

from relatlas.clients.backbone_weights import file_digest, load_checked, read_state_dict, weights_path
from relatlas.clients.frozen_backbone import FrozenBackbone

# ImageNet normalisation: torchvision.transforms._presets.ImageClassification's defaults, which the
# ``transforms`` metadata of every torchvision classification weight states (e.g. ResNet18_Weights.IMAGENET1K_V1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_CHANNELS = (1, 3)  # one-channel images are repeated to the three the backbones take


class ImageNetInput(nn.Module):
    """A backbone's input transform: [B, 1 or 3, H, W] in [0, 1] to [B, 3, side, side],
    ImageNet-normalised. The whole image is resized (bilinear, antialiased), not
    resized and centre-cropped as for ImageNet photos: a dataset's images are already framed."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (self.side, self.side):
            x = functional.interpolate(x, size=(self.side, self.side), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"side={self.side}, mean={IMAGENET_MEAN}, std={IMAGENET_STD}"


def torchvision_backbone(
    input_shape: tuple[int, ...], embedding_dim: int, *, arch: str, weights: str, backbone: str = "frozen", size: int = 0
) -> nn.Module:
    """torchvision's ``arch`` with the weights of file ``weights``, its input transform
    in front (resized to ``size``, default the side its weights were trained at) and a
    projection to ``embedding_dim`` behind; ``backbone`` is ``frozen`` or ``finetune``."""
    name = f"torchvision encoder arch={arch}"
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(
            f"unknown torchvision classification architecture {arch!r} (e.g. resnet18, mobilenet_v3_small, vit_b_16)"
        )
    if backbone not in MODES:
        raise ValueError(f"{name}: backbone={backbone!r}; choose {' or '.join(MODES)}")
    if len(input_shape) != 3 or input_shape[0] not in IMAGE_CHANNELS:
        raise ValueError(f"{name} needs [1 or 3, H, W] images; the data's input shape is {list(input_shape)}")
    side = size or native_side(arch)
    if not (isinstance(side, int) and side > 0):
        raise ValueError(f"{name}: size must be a positive integer (the side images are resized to); got {size!r}")
    path = weights_path(weights)
    model = torchvision.models.get_model(arch)  # random initial weights; torchvision's weights= (a download) is never used
    classifier, width = _drop_classifier(model, name)
    state = {k: v for k, v in read_state_dict(path).items() if k not in (f"{classifier}.weight", f"{classifier}.bias")}
    load_checked(model, state, f"weights {str(path)!r} do not fit {name}")
    extractor = nn.Sequential(ImageNetInput(side), model)
    key = hashlib.sha256(f"{file_digest(path)}|{arch}|{extractor[0].extra_repr()}".encode()).hexdigest()
    return MODES[backbone](extractor, width, embedding_dim, key)


def native_side(arch: str) -> int:
    """The input side ``arch``'s torchvision weights were trained at (their metadata's crop size)."""
    return int(torchvision.models.get_model_weights(arch).DEFAULT.transforms().crop_size[0])


def _drop_classifier(model: nn.Module, name: str) -> tuple[str, int]:
    """Replace the architecture's classifier (its last linear layer) by the identity:
    (its module name, the feature width it took)."""
    linears = [(key, module) for key, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ValueError(f"{name} has no linear classifier to replace by the client's projection")
    key, last = linears[-1]
    parent, _, child = key.rpartition(".")
    setattr(model.get_submodule(parent), child, nn.Identity())
    return key, last.in_features


def _finetuned(extractor: nn.Module, width: int, embedding_dim: int, key: str) -> nn.Module:
    """The whole backbone trains, with the projection behind it."""
    return nn.Sequential(extractor, nn.Linear(width, embedding_dim))


MODES = {"frozen": FrozenBackbone, "finetune": _finetuned}  # backbone=... -> (extractor, width, embedding_dim, key) -> module
