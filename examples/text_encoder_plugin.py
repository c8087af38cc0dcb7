"""A user's encoder of text, for a text table (``--dataset csv:PATH`` or ``jsonl:PATH``):

    PYTHONPATH=examples relatlas run --plugins text_encoder_plugin --encoder letters \
        --dataset csv:reviews.csv:text=review:label=stars

An encoder takes text when its factory sets ``input_kind = "text"``: its module then
gets each batch as a list of strings (``input_shape`` is ``()``). This one counts
letters, a deliberately small stand-in for a real text encoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from relatlas.registries import ENCODERS

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


class Letters(nn.Module):
    """Each text's letter counts (per character), then a linear map to the embedding."""

    def __init__(self, embedding_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(len(ALPHABET), embedding_dim)

    def forward(self, texts: list[str]) -> Tensor:
        counts = torch.zeros(len(texts), len(ALPHABET))
        for row, text in enumerate(texts):
            letters = [ALPHABET.index(c) for c in text.lower() if c in ALPHABET]
            counts[row] = torch.bincount(torch.tensor(letters, dtype=torch.long), minlength=len(ALPHABET)).float()
            counts[row] /= max(1, len(letters))
        return self.linear(counts)


@ENCODERS.register("letters")
def letters(input_shape: tuple[int, ...], embedding_dim: int) -> nn.Module:
    return Letters(embedding_dim)


letters.input_kind = "text"
