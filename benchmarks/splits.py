"""Seeded task splits of one labelled training set across K clients.

Every split returns, per client, indices into the training set. Anchors are
chosen first and excluded, so no client trains on an anchor sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from relatlas.aggregation.anchors import AnchorSampling, select_anchors
from relatlas.benchmarks.datasets import first_few

Split = Literal["shared-classes", "same-classes", "disjoint-classes", "dirichlet"]
SPLITS: tuple[Split, ...] = ("shared-classes", "same-classes", "disjoint-classes", "dirichlet")


class SplitError(ValueError):
    """A split that cannot be made with the requested sizes."""


@dataclass(frozen=True)
class FederationPlan:
    """Who holds what: the public anchors and each client's private training samples."""

    anchor_indices: np.ndarray
    client_indices: tuple[np.ndarray, ...]
    client_classes: tuple[tuple[int, ...], ...]
    shared_classes: tuple[int, ...]


def class_plan(
    num_classes: int, split: Split, num_clients: int, *, shared: int, novel: int | None, seed: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(shared classes, classes of each client) for a split, before any sample is dealt."""
    if num_clients < 1:
        raise SplitError(f"need at least one client, got {num_clients}")
    order = [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]
    if split == "shared-classes":
        if not 0 <= shared < num_classes:
            raise SplitError(
                f"shared classes S={shared} must be in [0, {num_classes - 1}]: the dataset has {num_classes} classes"
            )
        per_client = (num_classes - shared) // num_clients if novel is None else novel
        if per_client < 1 or shared + per_client * num_clients > num_classes:
            raise SplitError(
                f"{num_clients} clients with {max(per_client, 1)} novel classes each need "
                f"{shared + max(per_client, 1) * num_clients} classes, the dataset has {num_classes} (S={shared})"
            )
        common = tuple(sorted(order[:shared]))
        groups = [order[shared + k * per_client : shared + (k + 1) * per_client] for k in range(num_clients)]
        return common, tuple(tuple(sorted(common + tuple(g))) for g in groups)
    if split == "disjoint-classes":
        if num_clients > num_classes:
            raise SplitError(f"{num_clients} clients cannot hold disjoint classes of a {num_classes}-class dataset")
        groups = np.array_split(np.asarray(order), num_clients)
        return (), tuple(tuple(sorted(int(c) for c in g)) for g in groups)
    if split in ("same-classes", "dirichlet"):
        every = tuple(range(num_classes))
        return every, tuple(every for _ in range(num_clients))
    raise SplitError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")


def _deal(indices: np.ndarray, proportions: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = (np.cumsum(proportions)[:-1] * len(indices)).round().astype(int)
    return np.split(rng.permutation(indices), cuts)


def plan_federation(
    labels: np.ndarray,
    split: Split,
    num_clients: int,
    *,
    num_anchors: int,
    shared: int = 0,
    novel: int | None = None,
    alpha: float = 0.5,
    anchor_sampling: AnchorSampling = "uniform",
    seed: int = 0,
) -> FederationPlan:
    """Choose anchors and deal the remaining training samples to clients.

    ``shared-classes``: all samples of the S shared classes go to every client,
    plus ``novel`` classes of its own (default: the rest dealt evenly); anchors come
    from shared classes. ``same-classes``: every client sees every class on disjoint,
    class-imbalanced samples (each client gets at least half its even share of each
    class). ``disjoint-classes``: disjoint class sets. ``dirichlet``: per-class
    proportions drawn from Dirichlet(alpha).
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    shared_classes, client_classes = class_plan(num_classes, split, num_clients, shared=shared, novel=novel, seed=seed)
    anchor_classes = shared_classes if split == "shared-classes" else None
    if split == "shared-classes" and not shared_classes:
        raise SplitError("shared-classes split draws anchors from shared classes: set S >= 1")
    try:
        anchors = select_anchors(labels, num_anchors, sampling=anchor_sampling, classes=anchor_classes, seed=seed)
    except ValueError as err:
        raise SplitError(f"{err}; use fewer anchors") from None
    pool = np.setdiff1d(np.arange(len(labels)), anchors)
    rng = np.random.default_rng(seed + 1)
    per_client: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for cls in range(num_classes):
        members = pool[labels[pool] == cls]
        holders = [k for k, classes in enumerate(client_classes) if cls in classes]
        if split == "shared-classes" and cls in shared_classes:
            parts = [members] * len(holders)
        elif split == "same-classes":
            parts = _deal(members, 0.5 / num_clients + 0.5 * rng.dirichlet(np.ones(num_clients)), rng)
        elif split == "dirichlet":
            if alpha <= 0:
                raise SplitError(f"dirichlet alpha must be positive, got {alpha}")
            parts = _deal(members, rng.dirichlet(np.full(num_clients, alpha)), rng)
        else:
            parts = [members] if holders else []
        for k, part in zip(holders, parts):
            per_client[k].append(part)
    client_indices = tuple(np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64) for parts in per_client)
    empty = [k for k, idx in enumerate(client_indices) if len(idx) == 0]
    if empty:
        raise SplitError(f"clients {first_few(empty)} received no training samples; use fewer clients or a larger alpha")
    return FederationPlan(anchors, client_indices, client_classes, shared_classes)


def plan_for_task(labels: np.ndarray, task: Mapping[str, Any]) -> FederationPlan:
    """The plan of a run config (hyphenated keys): server and clients derive the
    same plan from the same values, so only the config travels."""
    return plan_federation(
        labels,
        task["split"],
        int(task["num-clients"]),
        num_anchors=int(task["anchors"]),
        shared=int(task["shared-classes"]),
        novel=int(task["novel-classes"]) or None,
        alpha=float(task["alpha"]),
        anchor_sampling=task["anchor-sampling"],
        seed=int(task["seed"]),
    )
