"""``relatlas bench atlas``: the static federation over a grid of datasets x
splits x aggregations x anchor counts x seeds, every cell a parallel trial."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relatlas.benchmarks.suite import grouped_table, run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial
from relatlas.server.config import RunConfig


@dataclass(frozen=True)
class AtlasSuiteConfig:
    """The grid; every other run-config value at its default (MLP encoders)."""

    datasets: tuple[str, ...] = ("digits",)
    splits: tuple[str, ...] = ("shared-classes", "same-classes")
    aggregations: tuple[str, ...] = ("mean", "product")
    anchor_counts: tuple[int, ...] = (16, 64)
    seeds: tuple[int, ...] = (0, 1)
    num_clients: int = 3
    epochs: int = 3
    probe_epochs: int = 30
    data_root: str = ""
    out_dir: str = "runs/bench-atlas"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def trials(self) -> list[Trial]:
        """One federation per grid cell, each config validated before anything starts."""
        trials = []
        grid = itertools.product(self.datasets, self.splits, self.aggregations, self.anchor_counts, self.seeds)
        for dataset, split, aggregation, anchors, seed in grid:
            name = f"{dataset.replace(':', '-').replace('/', '-')}-{split}-{aggregation}-m{anchors}-seed{seed}"
            config = RunConfig(
                dataset=dataset, data_root=self.data_root, split=split, aggregation=aggregation, anchors=anchors, seed=seed,
                num_clients=self.num_clients, epochs=self.epochs, encoder="mlp", probe_epochs=self.probe_epochs,
                out_dir=str(Path(self.out_dir) / name), tracking_uri=self.tracking_uri, experiment=self.experiment,
            )  # fmt: skip
            labels = {"dataset": dataset, "split": split, "aggregation": aggregation, "anchors": anchors, "seed": seed}
            trials.append(Trial(name, "relatlas.benchmarks.sweep:federation_trial", config.to_mapping(), labels))
        return trials


def atlas_table(records: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per (dataset, split, aggregation, anchors), mean ± std over seeds."""
    columns = {
        "merged accuracy": "merged_accuracy",
        "centralised": "centralized_accuracy",
        "CKA(merged, centralised)": "cka_merged_centralized",
        "wall s": "wall_seconds",
    }
    return grouped_table(records, ("dataset", "split", "aggregation", "anchors"), columns)


def run_atlas_suite(suite: AtlasSuiteConfig, resources: SweepResources) -> list[dict[str, Any]]:
    return run_sweep(
        "bench-atlas", dataclasses.asdict(suite), suite.trials(), resources,
        out_dir=Path(suite.out_dir), tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=atlas_table,
    )  # fmt: skip
