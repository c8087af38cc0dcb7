"""Seeded task splits of one labelled training set across K clients.

Every split returns, per client, indices into the training set. Anchors are
chosen first and excluded, so no client trains on an anchor sample; a public
pool (``public_pool`` rows, for the atlas the server sends back) is drawn next
from the rest, uniformly and with its own seeded generator, and excluded too, so
a plan without one deals exactly as before. A split is
a ``Split`` entry of ``relatlas.registries.SPLITS``: which classes each client
holds, and how one class's samples are dealt among the clients holding it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from relatlas.aggregation.anchors import AnchorSampling, select_anchors
from relatlas.benchmarks.datasets import first_few
from relatlas.registries import SPLITS
from relatlas.registry import RegistryError
from relatlas.sections import AnchorsSection, DataSection


class SplitError(ValueError):
    """A split that cannot be made with the requested sizes."""


@dataclass(frozen=True)
class FederationPlan:
    """Who holds what: the public anchors, the public pool and each client's private training samples."""

    anchor_indices: np.ndarray
    client_indices: tuple[np.ndarray, ...]
    client_classes: tuple[tuple[int, ...], ...]
    shared_classes: tuple[int, ...]
    public_indices: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=np.int64))


ClassGroups = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]  # (shared classes, classes of each client)


@dataclass(frozen=True)
class Split:
    """``classes(seeded class order, num_clients, shared, novel) -> ClassGroups``;
    ``deal(samples of one class, holders, is_shared, alpha, rng) -> one part per holder``;
    ``anchors_from_shared``: anchors come from the shared classes only;
    ``deal_pool(the rows left, num_clients, rng) -> one part per client``: if set, the
    rows are dealt all at once, whatever their class, instead of class by class."""

    classes: Callable[[list[int], int, int, int | None], ClassGroups]
    deal: Callable[[np.ndarray, int, bool, float, np.random.Generator], list[np.ndarray]]
    anchors_from_shared: bool = False
    deal_pool: Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]] | None = None


def _split(name: str) -> Split:
    try:
        return SPLITS.get(name)
    except RegistryError as err:
        raise SplitError(str(err)) from None


def class_plan(num_classes: int, split: str, num_clients: int, *, shared: int, novel: int | None, seed: int) -> ClassGroups:
    """(shared classes, classes of each client) for a split, before any sample is dealt."""
    rule = _split(split)
    if num_clients < 1:
        raise SplitError(f"need at least one client, got {num_clients}")
    order = [int(c) for c in np.random.default_rng(seed).permutation(num_classes)]
    return rule.classes(order, num_clients, shared, novel)


def _shared_and_novel(order: list[int], num_clients: int, shared: int, novel: int | None) -> ClassGroups:
    num_classes = len(order)
    if not 0 <= shared < num_classes:
        raise SplitError(f"shared classes S={shared} must be in [0, {num_classes - 1}]: the dataset has {num_classes} classes")
    per_client = (num_classes - shared) // num_clients if novel is None else novel
    if per_client < 1 or shared + per_client * num_clients > num_classes:
        raise SplitError(
            f"{num_clients} clients with {max(per_client, 1)} novel classes each need "
            f"{shared + max(per_client, 1) * num_clients} classes, the dataset has {num_classes} (S={shared})"
        )
    common = tuple(sorted(order[:shared]))
    groups = [order[shared + k * per_client : shared + (k + 1) * per_client] for k in range(num_clients)]
    return common, tuple(tuple(sorted(common + tuple(g))) for g in groups)


def _disjoint(order: list[int], num_clients: int, shared: int, novel: int | None) -> ClassGroups:
    if num_clients > len(order):
        raise SplitError(f"{num_clients} clients cannot hold disjoint classes of a {len(order)}-class dataset")
    groups = np.array_split(np.asarray(order), num_clients)
    return (), tuple(tuple(sorted(int(c) for c in g)) for g in groups)


def _every_class(order: list[int], num_clients: int, shared: int, novel: int | None) -> ClassGroups:
    every = tuple(range(len(order)))
    return every, tuple(every for _ in range(num_clients))


def _deal(indices: np.ndarray, proportions: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = (np.cumsum(proportions)[:-1] * len(indices)).round().astype(int)
    return np.split(rng.permutation(indices), cuts)


def _whole(members: np.ndarray, holders: int, is_shared: bool, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """A shared class to every holder, any other class to its one holder."""
    return [members] * holders if is_shared else [members] if holders else []


def _imbalanced(members: np.ndarray, holders: int, is_shared: bool, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint parts, each at least half an even share."""
    return _deal(members, 0.5 / holders + 0.5 * rng.dirichlet(np.ones(holders)), rng)


def _dirichlet(members: np.ndarray, holders: int, is_shared: bool, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Disjoint parts in proportions drawn from Dirichlet(alpha)."""
    if alpha <= 0:
        raise SplitError(f"dirichlet alpha must be positive, got {alpha}")
    return _deal(members, rng.dirichlet(np.full(holders, alpha)), rng)


def _even(rows: np.ndarray, num_clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The shuffled rows in ``num_clients`` parts whose sizes differ by one at most: every
    client holds a row as long as there are as many rows, where a class-by-class deal of a
    few rows each (10,000 clients of Fashion-MNIST's 60,000) leaves some with none."""
    return np.array_split(rng.permutation(rows), num_clients)


# The built-ins, registered by path in ``relatlas.registries``.
shared_classes = Split(_shared_and_novel, _whole, anchors_from_shared=True)
same_classes = Split(_every_class, _imbalanced)
disjoint_classes = Split(_disjoint, _whole)
dirichlet = Split(_every_class, _dirichlet)
iid = Split(_every_class, _whole, deal_pool=_even)


def plan_federation(
    labels: np.ndarray,
    split: str,
    num_clients: int,
    *,
    num_anchors: int,
    shared: int = 0,
    novel: int | None = None,
    alpha: float = 0.5,
    anchor_sampling: AnchorSampling = "uniform",
    seed: int = 0,
    public_pool: int = 0,
) -> FederationPlan:
    """Choose anchors and deal the remaining training samples to clients.

    ``shared-classes``: all samples of the S shared classes go to every client,
    plus ``novel`` classes of its own (default: the rest dealt evenly); anchors come
    from shared classes. ``same-classes``: every client sees every class on disjoint,
    class-imbalanced samples (each client gets at least half its even share of each
    class). ``disjoint-classes``: disjoint class sets. ``dirichlet``: per-class
    proportions drawn from Dirichlet(alpha). ``iid``: the rows shuffled and dealt
    evenly, whatever their class. ``public_pool`` rows are held out of
    every client's share (``public_indices``).
    """
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    rule = _split(split)
    shared_classes, client_classes = class_plan(num_classes, split, num_clients, shared=shared, novel=novel, seed=seed)
    anchor_classes = shared_classes if rule.anchors_from_shared else None
    if rule.anchors_from_shared and not shared_classes:
        raise SplitError(f"{split} split draws anchors from shared classes: set S >= 1")
    try:
        anchors = select_anchors(labels, num_anchors, sampling=anchor_sampling, classes=anchor_classes, seed=seed)
    except ValueError as err:
        raise SplitError(f"{err}; use fewer anchors") from None
    pool = np.setdiff1d(np.arange(len(labels)), anchors)
    public = _public_pool(pool, public_pool, seed)
    pool = np.setdiff1d(pool, public)
    rng = np.random.default_rng(seed + 1)
    if rule.deal_pool is not None:
        if len(pool) < num_clients:
            raise SplitError(f"{num_clients} clients need a training row each; {len(pool)} rows are left beside the anchors")
        per_client = [[part] for part in rule.deal_pool(pool, num_clients, rng)]
    else:
        per_client = [[] for _ in range(num_clients)]
        for cls in range(num_classes):
            members = pool[labels[pool] == cls]
            holders = [k for k, classes in enumerate(client_classes) if cls in classes]
            parts = rule.deal(members, len(holders), cls in shared_classes, alpha, rng)
            for k, part in zip(holders, parts):
                per_client[k].append(part)
    client_indices = tuple(np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64) for parts in per_client)
    empty = [k for k, idx in enumerate(client_indices) if len(idx) == 0]
    if empty:
        raise SplitError(f"clients {first_few(empty)} received no training samples; use fewer clients or a larger alpha")
    return FederationPlan(anchors, client_indices, client_classes, shared_classes, public)


PUBLIC_POOL_STREAM = 2  # the pool's generator is seeded apart from the dealing's (seed + 1)


def _public_pool(rows: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``size`` of ``rows`` drawn uniformly, sorted; none without drawing anything when ``size`` is 0."""
    if size == 0:
        return np.empty(0, dtype=np.int64)
    if size >= len(rows):
        raise SplitError(f"public-pool {size} leaves no training rows to the clients: {len(rows)} rows beside the anchors")
    return np.sort(np.random.default_rng(seed + PUBLIC_POOL_STREAM).choice(rows, size, replace=False))


def plan_for(labels: np.ndarray, data: DataSection, anchors: AnchorsSection, seed: int) -> FederationPlan:
    """The plan of a run's data and anchors sections (a ``RunConfig`` is both): the
    server and every client derive the same plan from the same settings, so only
    the settings travel."""
    return plan_federation(
        labels,
        data.split,
        data.num_clients,
        num_anchors=anchors.anchors,
        shared=data.shared_classes,
        novel=data.novel_classes or None,
        alpha=data.alpha,
        anchor_sampling=anchors.anchor_sampling,
        seed=seed,
        public_pool=data.public_pool,
    )
