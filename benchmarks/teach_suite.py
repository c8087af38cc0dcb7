"""``relatlas bench teach``: what each federated algorithm gives its clients, in one table.

Local training only, FedAvg, FedProto, relatlas without and with the atlas sent back,
and the centralised reference (``relatlas.registries.ALGORITHMS``), each on the same
run config but for the algorithm and atlas keys: the same splits, public pool (held
out of every row's partitions, used by the atlas row only), held-back local test rows,
clients and seeds. Per dataset and row, mean ± std over the seeds of: the merged
accuracy (the label-free merge of the clients' relative spaces), the global model's
(FedAvg, centralised), the average client test accuracy (each client's own model on
its held-back rows) and the merged head stitched onto each client, on the classes it
never saw (the mean over clients).

Settings: ``default`` is ``bench feedback``'s (3 MLP clients, 4 shared and 2 own
classes each, 64 anchors), ``htfl`` HtFLlib's (``benchmarks/htfl.py``). A row whose
algorithm refuses the setting (FedAvg and htfl's different encoders) is listed under
the table with the reason.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from relatlas.benchmarks.htfl import HTFL
from relatlas.benchmarks.suite import grouped_table, run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial, results_record
from relatlas.server.algorithms import algorithm_of, run_algorithm_here
from relatlas.server.config import ConfigError, RunConfig

ATLAS_ROW = "relatlas+atlas"
ROWS = ("local", "fedavg", "fedproto", "relatlas", ATLAS_ROW, "centralised")
FEEDBACK_SETTING = {"split": "shared-classes", "num-clients": 3, "shared-classes": 4, "novel-classes": 2, "anchors": 64}
SETTINGS: dict[str, dict[str, Any]] = {"default": FEEDBACK_SETTING | {"encoder": "mlp"}, "htfl": HTFL}
COLUMNS = {
    "merged": "merged_accuracy",
    "global model": "global_accuracy",
    "average client test": "average_client_test_accuracy",
    "stitched, unseen classes": "stitched_unseen_accuracy",
}
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class TeachSuiteConfig:
    """The grid: datasets x rows x seeds, every row on one setting's run config."""

    datasets: tuple[str, ...] = ("digits", "fashion-mnist")
    rows: tuple[str, ...] = ROWS
    seeds: tuple[int, ...] = (0, 1, 2)
    setting: str = "default"
    rounds: int = 5
    epochs: int = 1
    local_test_fraction: float = 0.2
    public_pool: int = 300
    atlas_weight: float = 3.0  # bench feedback's best on digits (docs/results/feedback.md)
    atlas_objective: str = RunConfig.atlas_objective
    atlas_leave_one_out: bool = False
    eval_samples: int | None = None  # None: the setting's (default: the whole test set)
    probe_epochs: int = 30
    data_root: str = ""
    out_dir: str = "runs/bench-teach"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def __post_init__(self) -> None:
        if self.setting not in SETTINGS:
            raise ConfigError(f"unknown setting {self.setting!r}; choose from {', '.join(SETTINGS)}")
        unknown = [row for row in self.rows if row not in ROWS]
        if unknown:
            raise ConfigError(f"unknown algorithm row {unknown[0]!r}; choose from {', '.join(ROWS)}")
        if ATLAS_ROW in self.rows and not self.atlas_weight:
            raise ConfigError(f"row {ATLAS_ROW} needs an atlas-weight above 0 (0 is row relatlas)")
        if not (self.datasets and self.rows and self.seeds):
            raise ConfigError("bench teach needs at least one dataset, one algorithm row and one seed")

    def run_config(self, dataset: str, row: str, seed: int, out_dir: str) -> RunConfig:
        """The setting's config for ``dataset`` and ``seed``; only the algorithm and atlas keys depend on ``row``."""
        keys = SETTINGS[self.setting] | {
            "dataset": dataset, "data-root": self.data_root, "seed": seed, "rounds": self.rounds, "epochs": self.epochs,
            "local-test-fraction": self.local_test_fraction, "public-pool": self.public_pool, "probe-epochs": self.probe_epochs,
            "simulation-baselines": False, "out-dir": out_dir, "tracking-uri": self.tracking_uri, "experiment": self.experiment,
            "algorithm": "relatlas" if row == ATLAS_ROW else row,
        }  # fmt: skip
        if self.eval_samples is not None:
            keys["eval-samples"] = self.eval_samples
        if row == ATLAS_ROW:
            keys |= {
                "atlas-weight": self.atlas_weight, "atlas-objective": self.atlas_objective,
                "atlas-leave-one-out": self.atlas_leave_one_out,
            }  # fmt: skip
        return RunConfig.from_mapping(keys)

    def plan(self) -> tuple[list[tuple[dict[str, Any], RunConfig]], list[str]]:
        """(labels, config) of every trial, and a line for each (dataset, row) whose algorithm refuses the setting."""
        runs, skipped = [], []
        for dataset, row in itertools.product(self.datasets, self.rows):
            for seed in self.seeds:
                name = f"{dataset.replace(':', '-').replace('/', '-')}-{row}-seed{seed}"
                config = self.run_config(dataset, row, seed, str(Path(self.out_dir) / name))
                try:
                    algorithm_of(config)
                except ConfigError as err:
                    skipped.append(f"{row} on {dataset}: {NOT_APPLICABLE} in setting {self.setting}: {err}")
                    break
                labels = {"dataset": dataset, "algorithm": row, "setting": self.setting, "seed": seed, "trial": name}
                runs.append((labels, config))
        if not runs:
            raise ConfigError(f"no algorithm row can run setting {self.setting}: {'; '.join(skipped)}")
        return runs, skipped

    def trials(self) -> list[Trial]:
        return [
            Trial(labels["trial"], "relatlas.benchmarks.teach_suite:local_trial", config.to_mapping(), labels)
            for labels, config in self.plan()[0]
        ]


def local_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A Runner: one federation of the row's algorithm on a ``LocalGrid`` (its clients in this
    trial's process, no Ray of its own), as ``bench feedback``'s; its results without the detail."""
    config = RunConfig.from_mapping(params | {"parent-run": parent_run_id})
    run_algorithm_here(config, algorithm_of(config))
    return results_record(Path(config.out_dir))


def with_scores(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with every column's key (``None`` where the algorithm has no such figure) and
    the stitched accuracy on unseen classes averaged over the clients that have one."""
    unseen = [v for v in record.get("stitched_other_classes_accuracy") or [] if v is not None]
    stitched = {"stitched_unseen_accuracy": float(np.mean(unseen)) if unseen else None}
    return dict.fromkeys(COLUMNS.values()) | dict(record) | stitched


def teach_table(records: Sequence[Mapping[str, Any]], skipped: Sequence[str] = ()) -> str:
    """Markdown: one row per (dataset, algorithm), mean ± std over seeds; ``n/a`` where a figure does not apply."""
    table = grouped_table([with_scores(r) for r in records], ("dataset", "algorithm"), COLUMNS, missing=NOT_APPLICABLE)
    return "\n\n".join([table, "\n".join(f"- {line}" for line in skipped)]) if skipped else table


def run_teach_suite(suite: TeachSuiteConfig, resources: SweepResources, in_process: bool = False) -> list[dict[str, Any]]:
    """Every trial (in parallel on Ray; ``in_process``: one after another, without Ray) under one MLflow suite run."""
    _, skipped = suite.plan()
    return run_sweep(
        "bench-teach", dataclasses.asdict(suite), suite.trials(), resources, out_dir=Path(suite.out_dir),
        tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=functools.partial(teach_table, skipped=skipped),
        in_process=in_process,
    )  # fmt: skip
