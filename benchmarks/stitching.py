"""Zero-shot stitching (Moschella et al., ICLR 2023), measured on embeddings.

A head trained on one encoder's space is applied to another encoder's space of
the same samples. The paper's premise: independently trained encoders learn
spaces that differ roughly by an angle-preserving map, so a head should not move
between their absolute spaces, and should between their relative spaces, which
that map leaves unchanged. Also measured: how similar the encoders' spaces are, and how well
one encoder's embeddings translate into another's through K parallel anchors.

Pure functions of embeddings; ``stitching_suite.py`` trains the encoders.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from relatlas.aggregation.aggregators import required_similarities
from relatlas.aggregation.measures import centred_cosine, linear_cka, matched_cosine, mean_reciprocal_rank, topk_jaccard
from relatlas.aggregation.merge import product_merge, standardize_rows
from relatlas.aggregation.projection import relative_projection, relative_subspaces
from relatlas.registries import TRANSLATIONS
from relatlas.server.evaluation import Probe, train_probe

# absolute: only comparable between encoders of equal width (every encoder of the suite has the same).
# cosine: the paper's relative space, as the mean merge uses it.
# euclidean, l1, linf: the other product subspaces, each row-standardised as the product merge does.
# product: all four row-standardised and concatenated (the product merge of one encoder).
SPACES = ("absolute", "cosine", "euclidean", "l1", "linf", "product")
JACCARD_K = 10


@dataclass(frozen=True)
class Embedded:
    """One encoder's embeddings of the held-out samples and of the anchors (in
    translation order: the first K are the K parallel anchors)."""

    name: str
    kind: str
    test: Tensor
    anchors: Tensor


def space_views(embeddings: Tensor, anchors: Tensor) -> dict[str, Tensor]:
    """Every space of ``SPACES`` for these embeddings."""
    similarities = required_similarities("product")
    subspaces = relative_subspaces(embeddings, anchors, similarities)
    distances = {name: standardize_rows(subspaces[name]) for name in similarities if name != "cosine"}
    product = product_merge([subspaces[name] for name in similarities])
    return {"absolute": embeddings, "cosine": subspaces["cosine"], **distances, "product": product}


def fit_heads(
    train: Tensor, anchors: Tensor, labels: np.ndarray, num_classes: int, *, epochs: int, seed: int
) -> dict[str, Probe]:
    """A head per space, trained on an encoder's embeddings of its training samples;
    every head starts from the same seed, so spaces and encoders compare on equal terms."""
    views = space_views(train, anchors)
    return {space: train_probe(views[space], labels, num_classes, epochs=epochs, seed=seed) for space in SPACES}


def linear_head(head: nn.Linear) -> Probe:
    """An encoder's own classification head, trained with it, as a head on its raw
    absolute space: the decoder latent translation hands translated embeddings to."""
    return Probe(head, torch.zeros(head.in_features), torch.ones(head.in_features))


def stitching_rows(
    encoders: Sequence[Embedded], head: str, heads: Mapping[str, Probe], labels: np.ndarray
) -> list[dict[str, Any]]:
    """Held-out accuracy of every encoder's space under encoder ``head``'s heads, per
    space; the row of ``head`` itself is that encoder's own accuracy."""
    return [
        {"encoder": e.name, "head": head}
        | {space: heads[space].accuracy(view, labels) for space, view in space_views(e.test, e.anchors).items()}
        for e in encoders
    ]


def stitching_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean own accuracy (over encoders) and mean cross accuracy (over ordered pairs
    encoder != head), per space; the headline is the cosine relative space against the absolute one."""
    spaces = {
        space: {
            "own": statistics.mean(r[space] for r in rows if r["encoder"] == r["head"]),
            "cross": statistics.mean(r[space] for r in rows if r["encoder"] != r["head"]),
        }
        for space in SPACES
    }
    return {
        "own_accuracy": spaces["cosine"]["own"],
        "relative_cross_accuracy": spaces["cosine"]["cross"],
        "own_absolute_accuracy": spaces["absolute"]["own"],
        "absolute_cross_accuracy": spaces["absolute"]["cross"],
        "spaces": spaces,
    }


def _others(encoders: Sequence[Embedded], target: Embedded) -> list[Embedded]:
    return [e for e in encoders if e.name != target.name]


def similarity_rows(encoders: Sequence[Embedded], target: Embedded, samples: int) -> list[dict[str, Any]]:
    """Latent similarity of every other encoder to ``target`` on the first ``samples``
    held-out samples, in the absolute and the cosine relative space. Jaccard@10 of
    the nearest neighbours within each space; MRR of each sample's counterpart and
    mean cosine across the spaces (equal widths only); linear CKA."""
    rows = []
    for source in _others(encoders, target):
        relative = [relative_projection(e.test[:samples], e.anchors) for e in (source, target)]
        for space, (x, y) in (("absolute", (source.test[:samples], target.test[:samples])), ("relative", relative)):
            rows.append({
                "source": source.name, "target": target.name, "pair": f"{source.kind}-{target.kind}", "space": space,
                "jaccard": topk_jaccard(x, y, k=JACCARD_K), "mrr": mean_reciprocal_rank(x, y),
                "cosine": matched_cosine(x, y), "cka": linear_cka(x, y),
            })  # fmt: skip
    return rows


def translation_rows(
    encoders: Sequence[Embedded], target: Embedded, head: Probe, probe: Probe, labels: np.ndarray, counts: Sequence[int]
) -> list[dict[str, Any]]:
    """Every other encoder's held-out embeddings translated into ``target``'s space
    through the first K anchors of both, by each method; compared with the target's
    true embeddings, and scored on the translated (``stitched_accuracy``) and the true
    embeddings (``target_accuracy``) by the target's ``head``, the linear head it was
    trained with, and (``probe_`` keys) by ``probe``, an MLP head fitted afterwards on
    its absolute space."""
    own = {"": head.accuracy(target.test, labels), "probe_": probe.accuracy(target.test, labels)}
    rows = []
    for source, k, method in itertools.product(_others(encoders, target), counts, TRANSLATIONS):
        moved = TRANSLATIONS.get(method)(source.test, source.anchors[:k], target.anchors[:k])
        row = {
            "source": source.name, "target": target.name, "pair": f"{source.kind}-{target.kind}", "method": method,
            "anchors": k, "cosine": matched_cosine(moved, target.test), "centred_cosine": centred_cosine(moved, target.test),
        }  # fmt: skip
        for prefix, scorer in (("", head), ("probe_", probe)):
            row |= {f"{prefix}stitched_accuracy": scorer.accuracy(moved, labels), f"{prefix}target_accuracy": own[prefix]}
        rows.append(row)
    return rows
