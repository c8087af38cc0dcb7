"""``relatlas bench anchors``: what clients lose when they cannot share anchor
samples, and how well one client's encoder translates into another's.

- Federations (Flower's simulation engine), one per anchor mode and seed count
  K: label-free merged accuracy and linear CKA to the centralised space.
- Translation quality between the encoders of clients 0 and 1, trained as the
  federation trains them: held-out test samples embedded by client 1 are
  translated into client 0's space through K seed pairs, then compared with
  client 0's own embeddings (mean cosine, retrieval top-1). Inverse relative
  projection chooses its ridge by cross-validation on the K seed pairs (the ridge
  column); ``ridges`` adds a row per fixed ridge, the sweep to check that choice.

Every federation and every translation measurement is an MLflow run nested
under one suite run.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import Tensor

from relatlas.aggregation.bootstrap import bootstrap_anchors, cosine_gram
from relatlas.aggregation.measures import centred_cosine, matched_cosine, retrieval_top1
from relatlas.aggregation.translation import cross_validated_ridge, translate_by_inversion
from relatlas.benchmarks.datasets import Dataset, load_dataset
from relatlas.benchmarks.splits import FederationPlan, plan_for
from relatlas.benchmarks.suite import grouped_table, run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial
from relatlas.clients.anchoring import anchor_seed, bootstrap_candidates
from relatlas.clients.training import predict, train_like_client
from relatlas.registries import TRANSLATIONS
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.tracking import use_tracking

MODES = ("shared", "class-matched", "bootstrapped", "translated-procrustes", "translated-inversion")


@dataclass(frozen=True)
class AnchorSuiteConfig:
    """Fashion-MNIST shared-classes split, 3 clients, MLP encoders; the K grid."""

    dataset: str = "fashion-mnist"
    data_root: str = ""
    seed_counts: tuple[int, ...] = (4, 8, 16, 32)
    translation_counts: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    seeds: tuple[int, ...] = (0, 1)
    modes: tuple[str, ...] = MODES
    num_clients: int = 3
    epochs: int = 3
    encoder: str = "mlp"
    embedding_dim: int = 64
    anchors: int = 64
    probe_epochs: int = 30
    held_out: int = 2000  # test samples translated and retrieved among
    translation_pool: int = 128  # public anchors of the translation plan; seeds are its first K, whatever K are asked
    ridges: tuple[float, ...] = ()  # fixed ridges of inverse relative projection, measured beside its cross-validated choice
    out_dir: str = "runs/bench-anchors"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def base(self, seed: int, **overrides: Any) -> RunConfig:
        values = dict(
            dataset=self.dataset, data_root=self.data_root, num_clients=self.num_clients, epochs=self.epochs,
            encoder=self.encoder, embedding_dim=self.embedding_dim, anchors=self.anchors, probe_epochs=self.probe_epochs,
            seed=seed, tracking_uri=self.tracking_uri, experiment=self.experiment,
        )  # fmt: skip
        return RunConfig(**(values | overrides))

    def trials(self) -> list[Trial]:
        """A translation trial per seed, then every federation; configs validated first."""
        if max(self.translation_counts) > self.translation_pool:
            raise ConfigError(f"translation seed counts go up to translation-pool ({self.translation_pool})")
        params = dataclasses.asdict(self)
        trials = [
            Trial(f"translation-seed{seed}", "relatlas.benchmarks.anchors_suite:translation_trial", params | {"seed": seed},
                  {"kind": "translation", "seed": seed})
            for seed in self.seeds
        ]  # fmt: skip
        for mode, k, config in self.run_configs():
            labels = {"kind": "federation", "mode": mode, "K": k, "seed": config.seed}
            trials.append(
                Trial(Path(config.out_dir).name, "relatlas.benchmarks.sweep:federation_trial", config.to_mapping(), labels)
            )
        return trials

    def run_configs(self) -> list[tuple[str, int | None, RunConfig]]:
        """(mode, K, config) of every federation, validated before anything starts."""
        unknown = sorted(set(self.modes) - set(MODES))
        if unknown:
            raise ConfigError(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
        grid = [(mode, None) for mode in ("shared", "class-matched")]
        grid += [(mode, k) for k in self.seed_counts for mode in MODES[2:]]
        runs = []
        for seed, (mode, k) in itertools.product(self.seeds, grid):
            if mode not in self.modes:
                continue
            name = f"{mode}{'' if k is None else f'-k{k}'}-seed{seed}"
            anchors_mode, _, translation = mode.partition("-") if mode.startswith("translated") else (mode, "", "procrustes")
            config = self.base(
                seed, anchors_mode=anchors_mode, translation=translation, seed_anchors=k or RunConfig.seed_anchors,
                out_dir=str(Path(self.out_dir) / name),
            )  # fmt: skip
            runs.append((mode, k, config))
        return runs


def translation_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A sweep Runner: translate client 1's embeddings of held-out test samples into
    client 0's space through the first K public anchors (shared classes), for each K.
    ``params``: the suite's fields and ``seed``."""
    seed = params["seed"]
    fields = {f.name for f in dataclasses.fields(AnchorSuiteConfig)}
    suite = AnchorSuiteConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in fields})
    config = suite.base(seed, anchors=suite.translation_pool)
    data = load_dataset(config.dataset, config.data_root or None, seed)
    plan = plan_for(data.y_train, config, config, config.seed)
    encoders = [train_like_client(config, config.seed, data, plan.client_indices[p], p).embedder for p in (0, 1)]
    rng = np.random.default_rng(seed)
    public = rng.permutation(plan.anchor_indices)  # seeds: its first K, so smaller K are subsets of larger
    held = rng.choice(len(data.x_test), size=min(suite.held_out, len(data.x_test)), replace=False)
    target, source = (predict(e, data.x_test[held]) for e in encoders)
    seeds_target, seeds_source = (predict(e, data.x_train[public]) for e in encoders)
    floor = target.mean(dim=0, keepdim=True).expand_as(target)  # one constant guess: how high cosine gets for free
    records = [
        _quality("none (raw embeddings)", None, source, target, seed),
        _quality("constant (target mean)", None, floor, target, seed),
    ]
    for k in suite.translation_counts:
        seed_pairs = seeds_source[:k], seeds_target[:k]
        measured = {method: _quality(method, k, move(source, *seed_pairs), target, seed) for method, move in TRANSLATIONS.items()}
        measured["inversion"]["ridge"] = cross_validated_ridge(*seed_pairs)  # the choice the inversion just made
        records += measured.values()
        for ridge in suite.ridges:
            moved = translate_by_inversion(source, *seed_pairs, ridge=ridge)
            records.append(_quality(f"inversion, ridge {ridge:g}", k, moved, target, seed) | {"ridge": ridge})
        if k < suite.anchors:
            pairs = _bootstrapped_pairs(data, plan, encoders, public[:k], suite.anchors, config.seed)
            moved = TRANSLATIONS.get("procrustes")(source, pairs[1], pairs[0])
            records.append(_quality(f"bootstrapped to {suite.anchors} + procrustes", k, moved, target, seed))
    use_tracking(suite.tracking_uri, suite.experiment)
    with mlflow.start_run(run_name=f"translation-seed{seed}", parent_run_id=parent_run_id):
        mlflow.log_params({"seed": seed, "held_out": len(held), "dataset": suite.dataset})
        for r in records:
            name = f"{re.sub(r'[^a-z0-9]+', '_', r['method']).strip('_')}_k{r['K'] or 0}"
            metrics = {"cosine": r["mean_cosine"], "centred_cosine": r["centred_cosine"], "top1": r["retrieval_top1"]}
            metrics |= {} if r["ridge"] is None else {"ridge": r["ridge"]}
            mlflow.log_metrics({f"{name}_{key}": value for key, value in metrics.items()})
    return {"rows": records}


def _quality(method: str, k: int | None, translated: Tensor, target: Tensor, seed: int) -> dict[str, Any]:
    """Mean cosine to the true embeddings, raw and with the true embeddings' mean
    removed from both (embeddings share a large mean direction), and retrieval top-1;
    ``ridge`` (inversion rows only) is filled in by the caller."""
    return {
        "method": method, "K": k, "seed": seed, "mean_cosine": matched_cosine(translated, target),
        "centred_cosine": centred_cosine(translated, target),
        "retrieval_top1": retrieval_top1(translated, target), "ridge": None,
    }  # fmt: skip


def _bootstrapped_pairs(
    data: Dataset, plan: FederationPlan, encoders: list[torch.nn.Module], seed_rows: np.ndarray, target: int, seed: int
) -> list[Tensor]:
    """Each client's embeddings of ``target`` parallel anchors grown from the seed
    rows over its own candidates (the federation's bootstrapped mode, for two clients)."""
    classes = data.y_train[plan.anchor_indices].tolist()
    pools = []
    for partition, encoder in enumerate(encoders):
        local = plan.client_indices[partition]
        rows = bootstrap_candidates(data.y_train[local], target, classes, anchor_seed(seed, partition))
        pools.append(predict(encoder, np.concatenate([data.x_train[seed_rows], data.x_train[local[rows]]])))
    picked = bootstrap_anchors([cosine_gram(p) for p in pools], [np.arange(len(seed_rows))] * 2, target=target)
    return [pool[rows] for pool, rows in zip(pools, picked)]


def suite_tables(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: the federations by mode and K, then the translations by method and K."""
    federations = [r for r in records if r["kind"] == "federation"]
    translations = [row for r in records if r["kind"] == "translation" for row in r["rows"]]
    parts = []
    if federations:
        columns = {"merged accuracy": "merged_accuracy", "CKA(merged, centralised)": "cka_merged_centralized"}
        parts.append(grouped_table(federations, ("mode", "K"), columns))
    if translations:
        columns = {
            "mean cosine": "mean_cosine", "centred cosine": "centred_cosine", "retrieval top-1": "retrieval_top1",
            "ridge": "ridge",
        }  # fmt: skip
        parts.append(grouped_table(translations, ("method", "K"), columns))
    return "\n\n".join(parts)


def run_anchor_suite(suite: AnchorSuiteConfig, resources: SweepResources) -> list[dict[str, Any]]:
    return run_sweep(
        f"bench-anchors-{suite.dataset}", dataclasses.asdict(suite), suite.trials(), resources,
        out_dir=Path(suite.out_dir), tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=suite_tables,
    )  # fmt: skip
