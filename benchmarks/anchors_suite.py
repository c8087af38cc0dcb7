"""``relatlas bench anchors``: what clients lose when they cannot share anchor
samples, and how well one client's encoder translates into another's.

- Federations (Flower's simulation engine), one per anchor mode and seed count
  K: label-free merged accuracy and linear CKA to the centralised space.
- Translation quality between the encoders of clients 0 and 1, trained as the
  federation trains them: held-out test samples embedded by client 1 are
  translated into client 0's space through K seed pairs, then compared with
  client 0's own embeddings (mean cosine, retrieval top-1).

Every federation and every translation measurement is an MLflow run nested
under one suite run.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import Tensor

from aggregation.bootstrap import bootstrap_anchors, cosine_gram
from aggregation.measures import matched_cosine, retrieval_top1
from benchmarks.datasets import Dataset, load_dataset
from benchmarks.splits import FederationPlan, plan_for_task
from benchmarks.suite import grouped_table, log_records, save_records, suite_run
from clients.anchoring import anchor_seed, bootstrap_candidates, translate
from clients.models import build_classifier
from clients.training import TrainConfig, derive_seed, fit, predict
from server.config import ConfigError, RunConfig

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

    def run_configs(self) -> list[tuple[str, int | None, RunConfig]]:
        """(mode, K, config) of every federation, validated before anything starts.
        Inversion needs K >= the embedding width, so smaller K have no inversion run."""
        unknown = sorted(set(self.modes) - set(MODES))
        if unknown:
            raise ConfigError(f"unknown modes {unknown}; choose from {', '.join(MODES)}")
        grid = [(mode, None) for mode in ("shared", "class-matched")]
        grid += [
            (mode, k) for k in self.seed_counts for mode in MODES[2:] if mode != "translated-inversion" or k >= self.embedding_dim
        ]
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


def run_federation_trial(config: RunConfig, parent_run_id: str) -> dict[str, Any]:
    from server.simulation import run_simulation

    run_simulation(dataclasses.replace(config, parent_run=parent_run_id), client_cpus=1.0, client_gpus=0.0)
    results = json.loads((Path(config.out_dir) / "results.json").read_text())
    return {key: results[key] for key in ("merged_accuracy", "cka_merged_centralized", "centralized_accuracy", "wall_seconds")}


def _client_encoder(config: RunConfig, data: Dataset, local: np.ndarray, partition: int) -> torch.nn.Module:
    """Client ``partition``'s encoder after round 1, as ``clients/client_app.py`` trains it."""
    model = build_classifier(
        data.input_shape, data.num_classes, embedding_dim=config.embedding_dim, encoder=config.encoder,
        seed=derive_seed(config.seed, partition),
    )  # fmt: skip
    train = TrainConfig(config.epochs, config.batch_size, config.learning_rate, derive_seed(config.seed, partition, 1))
    fit(model, data.x_train[local], data.y_train[local], train)
    return model.embedder


def translation_trial(suite: AnchorSuiteConfig, seed: int) -> list[dict[str, Any]]:
    """Translate client 1's embeddings of held-out test samples into client 0's
    space through the first K of the public anchors (shared classes), for each K."""
    config = suite.base(seed, anchors=max(suite.translation_counts))
    data = load_dataset(config.dataset, config.data_root or None, seed)
    plan = plan_for_task(data.y_train, config.to_mapping())
    encoders = [_client_encoder(config, data, plan.client_indices[p], p) for p in (0, 1)]
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
        records.append(
            _quality("procrustes", k, translate(source, seeds_source[:k], seeds_target[:k], "procrustes"), target, seed)
        )
        if k >= target.shape[1]:
            records.append(
                _quality("inversion", k, translate(source, seeds_source[:k], seeds_target[:k], "inversion"), target, seed)
            )
        if k < suite.anchors:
            pairs = _bootstrapped_pairs(data, plan, encoders, public[:k], suite.anchors, config.seed)
            moved = translate(source, pairs[1], pairs[0], "procrustes")
            records.append(_quality(f"bootstrapped to {suite.anchors} + procrustes", k, moved, target, seed))
    with mlflow.start_run(run_name=f"translation-seed{seed}", nested=True):
        mlflow.log_params({"seed": seed, "held_out": len(held), "dataset": suite.dataset})
        for r in records:
            name = f"{re.sub(r'[^a-z0-9]+', '_', r['method']).strip('_')}_k{r['K'] or 0}"
            metrics = {"cosine": r["mean_cosine"], "centred_cosine": r["centred_cosine"], "top1": r["retrieval_top1"]}
            mlflow.log_metrics({f"{name}_{key}": value for key, value in metrics.items()})
    return records


def _quality(method: str, k: int | None, translated: Tensor, target: Tensor, seed: int) -> dict[str, Any]:
    """Mean cosine to the true embeddings, raw and with the true embeddings' mean
    removed from both (embeddings share a large mean direction), and retrieval top-1."""
    centre = target.mean(dim=0)
    return {
        "method": method, "K": k, "seed": seed, "mean_cosine": matched_cosine(translated, target),
        "centred_cosine": matched_cosine(translated - centre, target - centre),
        "retrieval_top1": retrieval_top1(translated, target),
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


def suite_tables(records: list[dict[str, Any]]) -> str:
    federations = [r for r in records if r["kind"] == "federation"]
    translations = [r for r in records if r["kind"] == "translation"]
    parts = []
    if federations:
        columns = {"merged accuracy": "merged_accuracy", "CKA(merged, centralised)": "cka_merged_centralized"}
        parts.append(grouped_table(federations, ("mode", "K"), columns))
    if translations:
        columns = {"mean cosine": "mean_cosine", "centred cosine": "centred_cosine", "retrieval top-1": "retrieval_top1"}
        parts.append(grouped_table(translations, ("method", "K"), columns))
    return "\n\n".join(parts)


def run_anchor_suite(suite: AnchorSuiteConfig) -> list[dict[str, Any]]:
    """Translation measurements first (seconds), then the federations (minutes each)."""
    runs = suite.run_configs()
    out_dir = Path(suite.out_dir)
    records: list[dict[str, Any]] = []
    with suite_run(f"bench-anchors-{suite.dataset}", dataclasses.asdict(suite), suite.tracking_uri, suite.experiment) as parent:
        for seed in suite.seeds:
            print(f"translation quality, seed {seed}", flush=True)
            records += [{"kind": "translation"} | r for r in translation_trial(suite, seed)]
            save_records(out_dir, records, suite_tables(records))
        for number, (label, k, config) in enumerate(runs, 1):
            print(f"[{number}/{len(runs)}] {Path(config.out_dir).name}", flush=True)
            summary = run_federation_trial(config, parent)
            records.append({"kind": "federation", "mode": label, "K": k, "seed": config.seed} | summary)
            save_records(out_dir, records, suite_tables(records))
        log_records(out_dir)
    print(suite_tables(records))
    return records
