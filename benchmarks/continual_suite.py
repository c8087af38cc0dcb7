"""``relatlas bench continual``: rehearsal with and without CaSpeR, for a
centralised single learner and for a federation, over several seeds.

Every run is an MLflow run nested under one suite run. What "average accuracy"
scores differs by setting, and the table says so: the centralised learner's own
head (Avalanche's accuracy), the federation's label-free merged relative space
(probe accuracy, see ``server/continual.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relatlas.benchmarks.continual_metrics import summarize
from relatlas.benchmarks.splits import plan_for
from relatlas.benchmarks.streams import DatasetRef, class_schedule, client_stream
from relatlas.benchmarks.suite import grouped_table, run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial
from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.models import build_classifier
from relatlas.clients.training import derive_seed
from relatlas.encoder_spec import EncoderSpec
from relatlas.registries import REGULARIZERS
from relatlas.safe_files import private_dir
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.plots import plot_accuracy_curves, plot_accuracy_matrix

SETTINGS = ("centralised", "federated")
CENTRAL_ID = 10_000  # seed stream of the single learner, apart from the clients'


@dataclass(frozen=True)
class SuiteConfig:
    """The grid: settings x strategies x buffers x regularizers x seeds."""

    dataset: str = "fashion-mnist"
    data_root: str = ""
    experiences: int = 5
    strategies: tuple[str, ...] = ("replay", "er-ace")
    buffers: tuple[int, ...] = (200, 500)
    seeds: tuple[int, ...] = (0, 1, 2)
    settings: tuple[str, ...] = SETTINGS
    regularizers: tuple[str, ...] = REGULARIZERS.names()
    num_clients: int = 3
    epochs: int = 1
    encoder: str = "mlp"
    probe_epochs: int = 30
    casper_rho: float = RunConfig.casper_rho
    casper_classes: int = RunConfig.casper_classes
    casper_batch: int = RunConfig.casper_batch
    casper_k: int = RunConfig.casper_k
    out_dir: str = "runs/bench-continual"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def trials(self) -> list[Trial]:
        """Every run as a sweep trial, each config validated before anything starts."""
        runner = {
            "centralised": "relatlas.benchmarks.continual_suite:centralised_trial",
            "federated": "relatlas.benchmarks.sweep:federation_trial",
        }
        return [
            Trial(
                Path(config.out_dir).name,
                runner[setting],
                config.to_mapping(),
                {
                    "setting": setting,
                    "strategy": config.strategy,
                    "buffer": config.buffer,
                    "regularizer": config.regularizer,
                    "seed": config.seed,
                },
            )  # fmt: skip
            for setting, config in self.run_configs()
        ]

    def run_configs(self) -> list[tuple[str, RunConfig]]:
        """(setting, config) of every run."""
        unknown = sorted(set(self.settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"unknown settings {unknown}; choose from {', '.join(SETTINGS)}")
        runs = []
        grid = itertools.product(self.settings, self.strategies, self.buffers, self.regularizers, self.seeds)
        for setting, strategy, buffer, regularizer, seed in grid:
            config = RunConfig(
                dataset=self.dataset, data_root=self.data_root, split="same-classes", num_clients=self.num_clients,
                scenario="continual", experiences=self.experiences, strategy=strategy, regularizer=regularizer,
                buffer=buffer, epochs=self.epochs, encoder=self.encoder, probe_epochs=self.probe_epochs, seed=seed,
                casper_rho=self.casper_rho, casper_classes=self.casper_classes, casper_batch=self.casper_batch,
                casper_k=self.casper_k, tracking_uri=self.tracking_uri, experiment=self.experiment,
                out_dir=str(Path(self.out_dir) / f"{setting}-{strategy}-{regularizer}-b{buffer}-seed{seed}"),
            )  # fmt: skip
            runs.append((setting, config))
        return runs


def run_centralised(config: RunConfig, parent_run_id: str) -> dict[str, Any]:
    """One learner on the union of the federation's training data (anchors
    excluded), the same strategy and stream; Avalanche logs to a nested MLflow run.
    Avalanche is imported here, on the continual path only: it takes seconds (JAX,
    every QP solver), which every other ``relatlas bench`` suite would pay with it."""
    from relatlas.benchmarks.mlflow_logger import MLflowLogger
    from relatlas.clients.continual import build_strategy, train_experience

    ref = DatasetRef(config.dataset, config.data_root, config.seed)
    data = ref.load()
    plan = plan_for(data.y_train, config, config, config.seed)
    local = np.unique(np.concatenate(plan.client_indices))
    schedule = class_schedule(data.num_classes, config.experiences, config.stream, config.seed)
    benchmark = client_stream(ref, local, schedule, config.stream, config.seed)
    seed = derive_seed(config.seed, CENTRAL_ID)
    encoder = EncoderSpec.for_client(config.encoder, 0)  # the first client's
    model = build_classifier(data.input_shape, data.num_classes, embedding_dim=config.embedding_dim, encoder=encoder, seed=seed)
    logger = MLflowLogger.nested(parent_run_id, Path(config.out_dir).name)
    logger.log_params(config.to_mapping())
    strategy = build_strategy(model, ContinualConfig.from_sections(config, config, schedule), seed=seed, loggers=[logger])
    rows, seconds = [], 0.0
    for index in range(config.experiences):
        result = train_experience(strategy, benchmark, index, derive_seed(config.seed, CENTRAL_ID, index + 1))
        rows.append(result.head_accuracy)
        seconds += result.train_seconds
    summary = summarize(rows, config.experiences) | {"train_seconds": seconds}
    out_dir = private_dir(Path(config.out_dir))
    for plot, name in ((plot_accuracy_matrix, "accuracy_matrix"), (plot_accuracy_curves, "accuracy_curves")):
        logger.log_artifact(plot(summary["accuracy_matrix"], "single learner", out_dir / f"{name}.png"))
    logger.log_single_metric("average_accuracy", summary["average_accuracy"], config.experiences)
    logger.log_single_metric("forgetting", summary["forgetting"], config.experiences)
    logger.close()
    return summary


def centralised_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A sweep Runner for ``run_centralised``."""
    return run_centralised(RunConfig.from_mapping(params), parent_run_id)


def suite_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per (setting, strategy, buffer, regularizer), mean ± std over seeds."""
    columns = {"average accuracy": "average_accuracy", "forgetting": "forgetting", "train s": "train_seconds"}
    return grouped_table(records, ("setting", "strategy", "buffer", "regularizer"), columns)


def run_suite(suite: SuiteConfig, resources: SweepResources) -> list[dict[str, Any]]:
    """Run the grid as parallel trials; ``suite.json`` and ``table.md`` are
    rewritten as trials finish, so an interrupted suite keeps what finished."""
    return run_sweep(
        f"bench-continual-{suite.dataset}", dataclasses.asdict(suite), suite.trials(), resources,
        out_dir=Path(suite.out_dir), tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=suite_table,
    )  # fmt: skip
