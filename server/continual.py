"""The continual scenario on the server: score the merged space on every
experience seen so far, summarise accuracy matrices, and keep one nested MLflow
run per client for its Avalanche metrics.

Merged and client relative spaces are scored as in the static scenario, by a
probe fitted on the evaluation samples of the classes seen so far (re-fitted
each round, so the matrices measure how well the spaces still separate old
classes). The clients' own heads are scored by Avalanche on the clients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from relatlas.aggregation.aggregators import ClientSpace, aggregate
from relatlas.aggregation.learned_combine import LabelledRows
from relatlas.benchmarks.continual_metrics import summarize
from relatlas.benchmarks.streams import experience_rows
from relatlas.clients import protocol
from relatlas.server.evaluation import ProbeSplit
from relatlas.server.plots import plot_accuracy_curves, plot_accuracy_matrix
from relatlas.server.replies import ClientReply

if TYPE_CHECKING:
    from relatlas.benchmarks.mlflow_logger import MLflowLogger


@dataclasses.dataclass(frozen=True)
class ExperienceProbes:
    """The probe split cut by experience: which classes each experience holds and
    which scored samples belong to it."""

    probes: ProbeSplit
    schedule: tuple[tuple[int, ...], ...]
    columns: tuple[np.ndarray, ...]

    @classmethod
    def build(cls, probes: ProbeSplit, schedule: tuple[tuple[int, ...], ...], stream: str, seed: int) -> ExperienceProbes:
        positions = experience_rows(probes.labels[probes.test], schedule, stream, seed)
        return cls(probes, schedule, tuple(probes.test[p] for p in positions))

    def row(self, space: Tensor, seen: int) -> list[float]:
        """Accuracy on experiences ``0..seen-1`` of a probe fitted on their classes."""
        classes = sorted(set().union(*self.schedule[:seen]))
        train = self.probes.train[np.isin(self.probes.labels[self.probes.train], classes)]
        probe = dataclasses.replace(self.probes, train=train).fit(space)
        return [dataclasses.replace(self.probes, test=column).score(probe, space) for column in self.columns[:seen]]


def evaluate_experience(
    aggregation: str,
    spaces: Sequence[ClientSpace],
    partitions: Sequence[int],
    experiences: ExperienceProbes,
    seen: int,
    weights: Sequence[float] | None = None,
    hostile: int | None = None,
    labelled: LabelledRows | None = None,
) -> dict[str, object]:
    """Metrics of round ``seen``: the merged space's and each client space's
    accuracy on every experience so far; ``merged_accuracy`` is their mean.
    ``hostile``: how many of the clients the merge must withstand (None: none declared);
    ``labelled``: the public labelled rows a learned merge trains on."""
    merged_row = experiences.row(aggregate(aggregation, spaces, weights=weights, hostile=hostile, labelled=labelled), seen)
    client_rows = [experiences.row(aggregate(aggregation, [space], labelled=labelled), seen) for space in spaces]
    return {
        "merged_accuracy": float(np.mean(merged_row)),
        "experience_accuracy": merged_row,
        "client_partitions": list(partitions),
        "client_accuracy": [float(np.mean(row)) for row in client_rows],
        "client_experience_accuracy": client_rows,
    }


def head_accuracy(reply: ClientReply, seen: int) -> list[float] | None:
    """The client's own accuracy row (from Avalanche), if it is well formed."""
    row = reply.lists.get(protocol.HEAD_ACCURACY)
    return row if row is not None and len(row) == seen else None


def continual_summary(rounds: Sequence[dict], num_clients: int, experiences: int) -> dict[str, object]:
    """Accuracy matrices, average accuracy and forgetting of the merged space, of
    each client's local model (head) and of each client's relative space."""
    merged = summarize([r["experience_accuracy"] for r in rounds], experiences)

    def per_client(key: str) -> list[dict[str, object]]:
        rows = [dict(zip(r["client_partitions"], r[key])) for r in rounds]
        return [summarize([by_partition.get(p) for by_partition in rows], experiences) for p in range(num_clients)]

    heads, spaces = per_client("client_head_accuracy"), per_client("client_experience_accuracy")
    summary = dict(merged)
    for prefix, parts in (("client_", heads), ("client_space_", spaces)):
        for key in ("accuracy_matrix", "average_accuracy", "forgetting"):
            summary[prefix + key] = [part[key] for part in parts]
    return summary


class ClientRuns:
    """One nested MLflow run per client, holding the Avalanche metrics it reports."""

    def __init__(self, parent_run_id: str, run_ids: dict[int, str] | None = None) -> None:
        """``run_ids``: partition -> nested run id of the clients' runs so far (a resumed run).
        The logger, an Avalanche one, is imported here: Avalanche (and the JAX it pulls in)
        adds about 630 MB to a process, which a static run's server must not pay."""
        from relatlas.benchmarks.mlflow_logger import MLflowLogger

        self.parent_run_id = parent_run_id
        self.new_logger = MLflowLogger.nested
        self.loggers: dict[int, MLflowLogger] = {p: MLflowLogger(run_id) for p, run_id in (run_ids or {}).items()}

    def log_round(self, replies: Sequence[ClientReply], round_number: int) -> None:
        for reply in replies:
            if reply.partition_id not in self.loggers:
                logger = self.new_logger(self.parent_run_id, f"client-{reply.partition_id}")
                logger.log_params({"partition-id": reply.partition_id})
                self.loggers[reply.partition_id] = logger
            logger = self.loggers[reply.partition_id]
            for name, value in reply.metrics.items():
                if name.startswith(protocol.AVALANCHE_PREFIX):
                    logger.log_single_metric(name.removeprefix(protocol.AVALANCHE_PREFIX), value, round_number)
            logger.log_single_metric("train_seconds", reply.metrics.get("train-seconds", 0.0), round_number)

    def finish(self, summary: dict[str, object], out_dir: Path, failed: bool) -> None:
        """Heatmap and curves of each client's head accuracy, then close the runs (also when a figure cannot be written)."""
        try:
            for partition, logger in sorted(self.loggers.items()):
                matrix = summary["client_accuracy_matrix"][partition]
                for plot, name in ((plot_accuracy_matrix, "accuracy_matrix"), (plot_accuracy_curves, "accuracy_curves")):
                    path = out_dir / f"client{partition}_{name}.png"
                    logger.log_artifact(plot(matrix, f"client {partition}, local model", path))
        finally:
            for logger in self.loggers.values():
                logger.close(failed)
