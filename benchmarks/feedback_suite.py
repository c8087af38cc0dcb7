"""``relatlas bench feedback``: does the atlas the server sends back teach the
clients? The issue's setting (3 MLP clients, 4 shared and 2 own classes each, 64
anchors, a public pool, 5 rounds of 1 epoch) without feedback against each atlas
objective and weight, per seed: every client's own-space accuracy and the merged
accuracy of the last round, and their gains over the run without feedback."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relatlas.benchmarks.suite import grouped_table, run_sweep
from relatlas.benchmarks.sweep import SweepResources, Trial
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.federation import run_federation
from relatlas.server.local_grid import LocalGrid

NO_FEEDBACK = "none"
CURVE = ("merged_accuracy", "client_accuracy", "atlas_neighbour_agreement", "client_pool_neighbour_agreement")
ATLASES = {"mean": False, "leave-one-out": True}  # the atlas a client receives -> atlas-leave-one-out


@dataclass(frozen=True)
class FeedbackSuiteConfig:
    """The grid: objectives x weights x seeds, plus the run without feedback on the same plan."""

    dataset: str = "digits"
    data_root: str = ""
    objectives: tuple[str, ...] = ("mse", "kl-rows", "neighbourhood")
    weights: tuple[float, ...] = (1.0,)
    atlases: tuple[str, ...] = ("mean",)  # of ATLASES
    seeds: tuple[int, ...] = (0, 1)
    public_pool: int = 300
    rounds: int = 5
    epochs: int = 1
    eval_samples: int = 0
    probe_epochs: int = 30
    out_dir: str = "runs/bench-feedback"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def run_configs(self) -> list[tuple[dict[str, Any], RunConfig]]:
        """(labels, config) of every trial; the same split, pool and seeds in each, so only the feedback differs."""
        unknown = sorted(set(self.atlases) - set(ATLASES))
        if unknown:
            raise ConfigError(f"unknown atlas {unknown[0]!r}; choose from {', '.join(ATLASES)}")
        cells = [(NO_FEEDBACK, 0.0, "mean")] + list(itertools.product(self.objectives, self.weights, self.atlases))
        runs = []
        for (objective, weight, atlas), seed in itertools.product(cells, self.seeds):
            loo = "-loo" if ATLASES[atlas] else ""
            name = f"{self.dataset.replace(':', '-').replace('/', '-')}-{objective}-w{weight:g}{loo}-seed{seed}"
            config = RunConfig(
                dataset=self.dataset, data_root=self.data_root, split="shared-classes", num_clients=3, shared_classes=4,
                novel_classes=2, anchors=64, encoder="mlp", public_pool=self.public_pool, rounds=self.rounds,
                epochs=self.epochs, seed=seed, eval_samples=self.eval_samples, probe_epochs=self.probe_epochs,
                atlas_weight=weight, atlas_objective=objective if weight else RunConfig.atlas_objective,
                atlas_leave_one_out=ATLASES[atlas],
                simulation_baselines=False, out_dir=str(Path(self.out_dir) / name), tracking_uri=self.tracking_uri,
                experiment=self.experiment,
            )  # fmt: skip
            labels = {
                "dataset": self.dataset, "objective": objective, "weight": weight, "atlas": atlas, "seed": seed, "trial": name,
            }  # fmt: skip
            runs.append((labels, config))
        return runs

    def trials(self) -> list[Trial]:
        return [
            Trial(labels["trial"], "relatlas.benchmarks.feedback_suite:local_trial", config.to_mapping(), labels)
            for labels, config in self.run_configs()
        ]


def local_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A Runner: one federation on a ``LocalGrid`` (its clients in this trial's process, no
    Ray of its own: 15 small federations fit a laptop); the last round's figures and the curve."""
    config = RunConfig.from_mapping(params | {"parent-run": parent_run_id})
    results = run_federation(LocalGrid(config.num_clients, Path(config.out_dir) / "client-state"), config)
    curve = {key: [r.get(key) for r in results["rounds"]] for key in CURVE}
    return {k: v for k, v in results.items() if k not in ("config", "rounds", "note")} | {"curve": curve}


def with_gains(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each record with its clients' own-space accuracies apart and the gains over the run
    without feedback of the same dataset and seed: every client's, the least, and the merge's."""
    plain = {(r["dataset"], r["seed"]): r for r in records if r["objective"] == NO_FEEDBACK}
    rows = []
    for record in records:
        row = dict(record) | {f"client {i}": a for i, a in enumerate(record["client_accuracy"])}
        row |= _first_round_agreement(record.get("curve", {}))
        base = plain.get((record["dataset"], record["seed"]))
        if base is not None:
            gains = [a - b for a, b in zip(record["client_accuracy"], base["client_accuracy"])]
            row |= {f"gain {i}": g for i, g in enumerate(gains)}
            row |= {"least gain": min(gains), "merged gain": record["merged_accuracy"] - base["merged_accuracy"]}
        rows.append(row)
    return rows


def _first_round_agreement(curve: Mapping[str, list]) -> dict[str, float | None]:
    """The atlas's and the clients' (mean) 5-NN label agreement on the pool after round 1, before any feedback."""
    atlas, clients = (curve.get(key, [None])[0] for key in CURVE[2:])
    return {"atlas 5-NN": atlas, "clients 5-NN": None if clients is None else sum(clients) / len(clients)}


def feedback_table(records: Sequence[Mapping[str, Any]]) -> str:
    """Markdown: one row per (dataset, objective, weight, atlas), mean ± std over seeds."""
    rows = with_gains(records)
    clients = sorted({key for row in rows for key in row if key.startswith("client ")})
    gains = sorted({key for row in rows for key in row if key.startswith("gain ")})
    columns = {"merged": "merged_accuracy"} | {c: c for c in clients}
    if gains:
        columns |= {g: g for g in gains} | {"least client gain": "least gain", "merged gain": "merged gain"}
    columns |= {"atlas 5-NN, round 1": "atlas 5-NN", "clients 5-NN, round 1": "clients 5-NN"}
    return grouped_table(rows, ("dataset", "objective", "weight", "atlas"), columns)


def run_feedback_suite(suite: FeedbackSuiteConfig, resources: SweepResources, in_process: bool = False) -> list[dict[str, Any]]:
    """Every trial (in parallel on Ray; ``in_process``: one after another, without Ray) under one MLflow suite run."""
    return run_sweep(
        "bench-feedback", dataclasses.asdict(suite), suite.trials(), resources, out_dir=Path(suite.out_dir),
        tracking_uri=suite.tracking_uri, experiment=suite.experiment, table=feedback_table, in_process=in_process,
    )  # fmt: skip
