"""Seeded choice of anchor samples among labelled candidates.

The reference code draws anchors uniformly at random from training samples, or
class-stratified round-robin; in shared-classes splits only from the classes
every client knows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

AnchorSampling = Literal["uniform", "stratified"]


def select_anchors(
    labels: np.ndarray,
    num_anchors: int,
    *,
    sampling: AnchorSampling = "uniform",
    classes: Sequence[int] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Return ``num_anchors`` distinct indices into ``labels``.

    Parameters
    ----------
    labels
        Integer class of every candidate sample, shape [N].
    sampling
        ``uniform``: a random subset. ``stratified``: classes take turns
        (round-robin over a seeded shuffle of each class) so counts differ by at most one.
    classes
        Restrict candidates to these classes; all classes when ``None``.
    """
    labels = np.asarray(labels)
    if num_anchors < 1:
        raise ValueError(f"num_anchors must be at least 1, got {num_anchors}")
    allowed = np.unique(labels) if classes is None else np.asarray(sorted(set(classes)))
    candidates = np.flatnonzero(np.isin(labels, allowed))
    if len(candidates) < num_anchors:
        raise ValueError(
            f"asked for {num_anchors} anchors but only {len(candidates)} samples of classes {allowed.tolist()} are available"
        )
    rng = np.random.default_rng(seed)
    if sampling == "uniform":
        return np.sort(rng.choice(candidates, size=num_anchors, replace=False))
    if sampling == "stratified":
        per_class = [rng.permutation(candidates[labels[candidates] == c]) for c in allowed]
        order = [group[i] for i in range(max(map(len, per_class))) for group in per_class if i < len(group)]
        return np.sort(np.asarray(order[:num_anchors]))
    raise ValueError(f"unknown anchor sampling {sampling!r}; choose uniform or stratified")


def class_matched_anchors(labels: np.ndarray, anchor_classes: Sequence[int], *, seed: int = 0) -> np.ndarray:
    """Indices into ``labels`` such that anchor i is a distinct sample of class
    ``anchor_classes[i]``: each client draws its own private anchors, and anchor i
    means the same class on every client."""
    labels, wanted = np.asarray(labels), np.asarray(anchor_classes, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = np.empty(len(wanted), dtype=np.int64)
    for cls in np.unique(wanted):
        slots = np.flatnonzero(wanted == cls)
        members = np.flatnonzero(labels == cls)
        if len(members) < len(slots):
            raise ValueError(f"class-matched anchors need {len(slots)} samples of class {cls}; only {len(members)} are here")
        chosen[slots] = rng.choice(members, size=len(slots), replace=False)
    return chosen
