"""How the stitching bench trains its encoders (``TRAININGS``, ``--training``).

``absolute``: each encoder with a linear head on its absolute space, as the
federations train them; every space's stitching head is fitted afterwards on the
frozen embeddings. ``relative``: Moschella et al.'s relative training, the
encoder trained end to end through the cosine relative projection over the
bench's anchors, whose decoder is then the cosine space's stitching head, as in
the paper's stitching experiments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from relatlas.aggregation.projection import relative_projection
from relatlas.benchmarks.stitching import linear_head
from relatlas.clients.models import Classifier
from relatlas.server.evaluation import PROBE_HIDDEN, Probe


class RelativeClassifier(nn.Module):
    """The paper's relative training: a batch and the anchors embedded together by
    the encoder, projected to cosines, normalised per sample by a LayerNorm (as the
    paper's stitching heads do) and decoded by an MLP. The decoder sees only
    relative vectors, so it can read any encoder's: ``decoder_head``."""

    def __init__(self, embedder: nn.Module, anchors: Tensor, num_classes: int, seed: int) -> None:
        super().__init__()
        self.embedder = embedder
        self.register_buffer("anchors", anchors, persistent=False)  # inputs, not weights: rebuilt from the data
        width = len(anchors)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.decoder = nn.Sequential(
                nn.LayerNorm(width), nn.Linear(width, PROBE_HIDDEN), nn.ReLU(), nn.Linear(PROBE_HIDDEN, num_classes)
            )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(relative_projection(self.embedder(x), self.embedder(self.anchors)))


def decoder_head(model: RelativeClassifier) -> Probe:
    """A relatively trained encoder's decoder, as a head on cosine relative spaces over the same anchors."""
    width = model.decoder[0].normalized_shape[0]
    return Probe(model.decoder, torch.zeros(width), torch.ones(width))


@dataclass(frozen=True)
class Training:
    """How the bench's encoders learn: the model ``fit`` trains around a classifier
    (given the anchor inputs, the class count and a seed), and the heads it brings, by the
    space they read, in place of the heads fitted afterwards; ``decoder`` is the
    head on its absolute space that translations are scored by, if it has one."""

    model: Callable[[Classifier, Tensor, int, int], nn.Module]
    heads: Callable[[nn.Module], dict[str, Probe]]
    decoder: Callable[[nn.Module], Probe | None]


TRAININGS = {
    # each encoder with a linear head on its absolute space; every space's head fitted afterwards
    "absolute": Training(lambda model, anchors, classes, seed: model, lambda model: {}, lambda model: linear_head(model.head)),
    # the paper's: through the cosine relative projection, whose LayerNorm-MLP decoder is the cosine space's head
    "relative": Training(
        lambda model, anchors, classes, seed: RelativeClassifier(model.embedder, anchors, classes, seed),
        lambda model: {"cosine": decoder_head(model)}, lambda model: None,
    ),
}  # fmt: skip
