"""Text encoders trained from scratch: the ``tfidf`` and ``bag`` encoders of
``relatlas.registries.ENCODERS`` (both take a batch as a list of strings).

- ``tfidf[:features=F][:hidden=H][:dim=D]``: scikit-learn's TF-IDF of words and
  word pairs (sublinear term frequency, at most ``F`` terms), then an MLP. The
  vocabulary and inverse document frequencies are fitted on the client's own
  training texts only, the first time it trains (``fit_to_inputs``); its
  projection of the public samples uses that same vocabulary. They are kept as
  buffers of the model's state dict (the terms as UTF-8 JSON bytes, the weights
  as floats; no pickle), so they survive rounds in the client's state like its weights.
- ``bag[:buckets=B][:width=W][:dim=D]``: the mean of learned embeddings of its
  words and word pairs, each hashed (CRC-32) into ``B`` buckets, as fastText
  does for n-grams, then a ReLU and a linear map: nothing to fit but the weights.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

WORD = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token pattern, for both encoders


class Tfidf(nn.Module):
    """TF-IDF features of a fixed vocabulary, fitted once on the client's own texts; all zeros until then."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.features = features
        self.register_buffer("terms", torch.zeros(0, dtype=torch.uint8))  # JSON list of terms, column order
        self.register_buffer("idf", torch.zeros(0))
        self._vectorizer: Any = None

    @property
    def fitted(self) -> bool:
        return self.idf.numel() > 0

    def fit_inputs(self, texts: Sequence[str]) -> None:
        """Fit the vocabulary and idf on ``texts`` (the client's training texts)."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        fitted = TfidfVectorizer(ngram_range=(1, 2), max_features=self.features, sublinear_tf=True).fit([str(t) for t in texts])
        terms = [str(term) for term in fitted.get_feature_names_out()]
        self.terms = torch.frombuffer(bytearray(json.dumps(terms).encode("utf-8")), dtype=torch.uint8).clone()
        self.idf = torch.tensor(fitted.idf_, dtype=torch.float32)
        self._vectorizer = None

    def forward(self, texts: list[str]) -> Tensor:
        out = torch.zeros(len(texts), self.features, device=self.idf.device)
        if not self.fitted:
            return out
        counts = self._counts().transform(texts).tocoo()
        values = torch.tensor(1 + np.log(counts.data), dtype=torch.float32, device=out.device)  # sublinear tf, as fitted
        out[torch.as_tensor(counts.row, device=out.device), torch.as_tensor(counts.col, device=out.device)] = values
        out[:, : self.idf.numel()] *= self.idf
        return nn.functional.normalize(out, dim=1)

    def _counts(self) -> Any:
        """A word counter over the stored vocabulary (rebuilt after a fit or a state load)."""
        if self._vectorizer is None:
            from sklearn.feature_extraction.text import CountVectorizer

            terms = json.loads(bytes(self.terms.cpu().numpy()).decode("utf-8"))
            self._vectorizer = CountVectorizer(ngram_range=(1, 2), vocabulary=terms)
        return self._vectorizer

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        """Take the stored vocabulary's size, whatever this (unfitted) module's buffers hold."""
        for name in ("terms", "idf"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        self._vectorizer = None
        super()._load_from_state_dict(state_dict, prefix, *args)


def tfidf(input_shape: tuple[int, ...], embedding_dim: int, *, features: int = 4096, hidden: int = 256) -> nn.Module:
    """TF-IDF of at most ``features`` terms, one hidden ReLU layer of ``hidden`` units, linear to the embedding."""
    _positive("tfidf", features=features, hidden=hidden)
    return nn.Sequential(Tfidf(features), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, embedding_dim))


class HashedBag(nn.Module):
    """The mean embedding of each text's hashed words and word pairs."""

    def __init__(self, buckets: int, width: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.bag = nn.EmbeddingBag(buckets, width, mode="mean")

    def forward(self, texts: list[str]) -> Tensor:
        ids: list[int] = []
        offsets: list[int] = []
        for text in texts:
            offsets.append(len(ids))
            words = WORD.findall(text.lower())
            grams = words + [f"{a} {b}" for a, b in zip(words, words[1:])]
            ids.extend(zlib.crc32(gram.encode("utf-8")) % self.buckets for gram in grams or [""])
        device = self.bag.weight.device
        return self.bag(torch.tensor(ids, device=device), torch.tensor(offsets, device=device))


def bag(input_shape: tuple[int, ...], embedding_dim: int, *, buckets: int = 65536, width: int = 64) -> nn.Module:
    """A bag of hashed word embeddings (``buckets`` rows of ``width``), a ReLU, linear to the embedding."""
    _positive("bag", buckets=buckets, width=width)
    return nn.Sequential(HashedBag(buckets, width), nn.ReLU(), nn.Linear(width, embedding_dim))


tfidf.input_kind = bag.input_kind = "text"


def fit_to_inputs(model: nn.Module, x: Sequence[Any]) -> None:
    """Fit each part of ``model`` that is fitted to its training inputs (a ``fit_inputs``
    method, a ``fitted`` flag) and is not yet: once, on the first inputs it trains on."""
    for module in model.modules():
        if callable(getattr(module, "fit_inputs", None)) and not module.fitted:
            module.fit_inputs([x[i] for i in range(len(x))])


def _positive(name: str, **options: Any) -> None:
    for key, value in options.items():
        if not (isinstance(value, int) and value > 0):
            raise ValueError(f"{name} encoder: {key} must be a positive integer; got {value!r}")
