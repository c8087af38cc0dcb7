"""``relatlas bench stitching``: zero-shot stitching between independently
trained encoders (measurements in ``benchmarks/stitching.py``).

Two rounds of parallel Ray trials (``benchmarks/sweep.py``), each trial an
MLflow run nested under the suite's run, each using the torch threads of its
``cpus-per-trial``:

1. one per encoder (MLPs of several seeds, and CNNs where the inputs are 28x28
   or larger images): it trains on the same seeded subset of the training set as
   every other encoder, and sends back its embedder's weights;
2. one per trained encoder as the target: it embeds the data with every encoder,
   trains the target's heads, scores them on every encoder, and measures every
   other encoder's similarity to the target and translation into it.

This process only merges the rows and writes ``stitching.json`` and ``table.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from torch import nn

from relatlas.aggregation.anchors import select_anchors
from relatlas.benchmarks.datasets import Dataset, load_dataset
from relatlas.benchmarks.stitching import (
    SPACES,
    Embedded,
    fit_heads,
    similarity_rows,
    stitching_rows,
    stitching_summary,
    translation_rows,
)
from relatlas.benchmarks.stitching_training import TRAININGS
from relatlas.benchmarks.suite import failures_note, grouped_table, mean_std, suite_run
from relatlas.benchmarks.sweep import SweepResources, Trial, run_trials
from relatlas.clients.encoders import takes_cnn
from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, derive_seed, fit, predict
from relatlas.safe_files import private_dir, write_text_atomic
from relatlas.server.config import ConfigError
from relatlas.server.tracking import use_tracking


@dataclass(frozen=True)
class Selection:
    """Rows of the data every encoder shares: its training samples (also the heads'),
    the anchors in translation order, and the held-out test samples."""

    train: np.ndarray
    anchors: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class StitchingSuiteConfig:
    """Fashion-MNIST, 3 MLP seeds and 1 CNN on the same 20,000 training images."""

    dataset: str = "fashion-mnist"
    data_root: str = ""
    seeds: tuple[int, ...] = (0, 1, 2)  # MLP encoders
    cnn_seeds: tuple[int, ...] = (0,)  # CNN encoders, where the inputs are 28x28 or larger images
    epochs: int = 3
    training: str = "absolute"  # a name in TRAININGS
    train_samples: int = 20_000  # a seeded subset of up to this many training samples, for encoders and heads (0: all)
    embedding_dim: int = 64
    anchors: int = 256
    translation_anchors: tuple[int, ...] = (16, 32, 64, 128, 256)
    head_epochs: int = 10
    test_samples: int = 0  # up to this many held-out test samples, on which every head is scored (0: all)
    similarity_samples: int = 2_000  # the first of them, for the similarity measures
    seed: int = 0  # the rows drawn and the heads' initialisation
    out_dir: str = "runs/bench-stitching"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "anchors": self.anchors, "head-epochs": self.head_epochs,
                    "embedding-dim": self.embedding_dim}  # fmt: skip
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.train_samples < 0 or self.test_samples < 0:
            raise ConfigError(f"train-samples and test-samples must be >= 0, got {self.train_samples} and {self.test_samples}")
        if not self.translation_anchors or not all(1 <= k <= self.anchors for k in self.translation_anchors):
            raise ConfigError(
                f"translation-anchors must be in [1, anchors = {self.anchors}]; got {list(self.translation_anchors)}"
            )
        if self.similarity_samples <= 10:
            raise ConfigError(f"similarity-samples must be above 10 (Jaccard@10), got {self.similarity_samples}")
        if self.training not in TRAININGS:
            raise ConfigError(f"training must be one of {', '.join(TRAININGS)}; got {self.training!r}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.cnn_seeds)) != len(self.cnn_seeds):
            raise ConfigError(f"seeds must be distinct, got {list(self.seeds)} and cnn seeds {list(self.cnn_seeds)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> StitchingSuiteConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items() if k in fields})

    def load(self) -> Dataset:
        return load_dataset(self.dataset, self.data_root or None, self.seed)

    def encoders(self, data: Dataset) -> list[tuple[str, int]]:
        """(kind, seed) of every encoder, CNNs first (they take longest); CNNs only on images (``skipped``)."""
        cnns = [] if self.skipped(data) else [("cnn", s) for s in self.cnn_seeds]
        encoders = cnns + [("mlp", s) for s in self.seeds]
        if len(encoders) < 2:
            raise ConfigError(
                f"stitching needs at least 2 encoders, got {len(encoders)} (the cnn needs 28x28 or larger images; "
                f"inputs here are {data.input_shape})"
            )
        return encoders

    def skipped(self, data: Dataset) -> list[str]:
        """The configured encoders that cannot take the data, each with why: the table says so."""
        if takes_cnn(data.input_shape):
            return []
        why = f"the cnn needs [C, H, W] images with H = W >= 28, inputs here are {data.input_shape}"
        return [f"cnn-seed{seed}: {why}" for seed in self.cnn_seeds]

    def selection(self, data: Dataset) -> Selection:
        """The seeded rows; more anchors than training rows are refused."""
        rng = np.random.default_rng(self.seed)
        train, test = (
            _subset(len(y), cap, rng) for y, cap in ((data.y_train, self.train_samples), (data.y_test, self.test_samples))
        )
        if self.anchors > len(train):
            raise ConfigError(f"anchors ({self.anchors}) must not exceed the training samples ({len(train)})")
        anchors = train[rng.permutation(select_anchors(data.y_train[train], self.anchors, seed=self.seed))]
        return Selection(train, anchors, rng.permutation(test))  # similarity uses a prefix: a random subset

    def trials(self, data: Dataset) -> list[Trial]:
        """One training trial per encoder; the sizes are checked against the data first."""
        self.selection(data)
        params = dataclasses.asdict(self)
        return [
            Trial(f"{kind}-seed{seed}", "relatlas.benchmarks.stitching_suite:encoder_trial",
                  params | {"kind": kind, "encoder_seed": seed}, {"encoder": f"{kind}-seed{seed}", "kind": kind, "seed": seed})
            for kind, seed in self.encoders(data)
        ]  # fmt: skip

    def target_trials(self, trained: Sequence[Mapping[str, Any]]) -> list[Trial]:
        """One measuring trial per trained encoder, as the target (see ``target_trial``)."""
        encoders = [{"encoder": r["encoder"], "kind": r["kind"], "weights": r["weights"]} for r in trained]
        params = dataclasses.asdict(self) | {"encoders": encoders}
        return [
            Trial(f"heads-{e['encoder']}", "relatlas.benchmarks.stitching_suite:target_trial", params | {"target": e["encoder"]})
            for e in encoders
        ]


def _subset(n: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted rows of a seeded subset of at most ``cap`` of ``n`` (0: all)."""
    return np.sort(rng.choice(n, cap, replace=False)) if 0 < cap < n else np.arange(n)


def encoder_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A sweep Runner: train one encoder (``params``: the suite's fields, ``kind`` and
    ``encoder_seed``, which fixes its initialisation and data order) on the shared
    training rows; returns its training figures and its weights."""
    suite, kind, seed = StitchingSuiteConfig.from_params(params), params["kind"], params["encoder_seed"]
    data = suite.load()
    rows = suite.selection(data).train
    model = _model(suite, data, kind, derive_seed(seed))
    started = time.perf_counter()
    figures = fit(model, data.x_train[rows], data.y_train[rows], TrainConfig(epochs=suite.epochs, seed=derive_seed(seed, 1)))
    figures["train_seconds"] = time.perf_counter() - started
    use_tracking(suite.tracking_uri, suite.experiment)
    with mlflow.start_run(run_name=f"{kind}-seed{seed}", parent_run_id=parent_run_id):
        mlflow.log_params({"encoder": kind, "seed": seed, "epochs": suite.epochs, "train_samples": len(rows)})
        mlflow.log_metrics(figures)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return figures | {"weights": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _model(suite: StitchingSuiteConfig, data: Dataset, kind: str, seed: int) -> nn.Module:
    """An encoder of ``kind`` with what it trains with (``suite.training``), initialised from ``seed``."""
    model = build_classifier(data.input_shape, data.num_classes, embedding_dim=suite.embedding_dim, encoder=kind, seed=seed)
    anchors = torch.as_tensor(data.x_train[suite.selection(data).anchors])
    return TRAININGS[suite.training].model(model, anchors, data.num_classes, seed)


def _classifier(suite: StitchingSuiteConfig, data: Dataset, encoder: Mapping[str, Any]) -> nn.Module:
    """A trained encoder with its head or decoder, rebuilt from the weights its trial sent back."""
    model = _model(suite, data, encoder["kind"], 0)
    model.load_state_dict(torch.load(io.BytesIO(base64.b64decode(encoder["weights"])), weights_only=True))
    return model


def target_trial(params: dict[str, Any], parent_run_id: str, cpus: int, gpus: float) -> dict[str, Any]:
    """A sweep Runner: everything encoder ``params["target"]`` is the target of. Its
    heads, trained on its own spaces, scored on every encoder's held-out spaces; every
    other encoder's similarity to it, and translation into it. ``params``: the suite's
    fields, ``target``, and ``encoders`` (name, kind and weights of every trained encoder)."""
    suite = StitchingSuiteConfig.from_params(params)
    data = suite.load()
    selection = suite.selection(data)
    models = {e["encoder"]: _classifier(suite, data, e) for e in params["encoders"]}
    embedders = {name: model.embedder for name, model in models.items()}
    encoders = [
        Embedded(e["encoder"], e["kind"], predict(embedders[e["encoder"]], data.x_test[selection.test]),
                 predict(embedders[e["encoder"]], data.x_train[selection.anchors]))
        for e in params["encoders"]
    ]  # fmt: skip
    target = next(e for e in encoders if e.name == params["target"])
    train = predict(embedders[target.name], data.x_train[selection.train])
    training = TRAININGS[suite.training]
    heads = fit_heads(
        train, target.anchors, data.y_train[selection.train], data.num_classes, epochs=suite.head_epochs, seed=suite.seed
    ) | training.heads(models[target.name])
    labels = data.y_test[selection.test]
    stitching = stitching_rows(encoders, target.name, heads, labels)
    use_tracking(suite.tracking_uri, suite.experiment)
    with mlflow.start_run(run_name=f"heads-{target.name}", parent_run_id=parent_run_id):
        mlflow.log_params({"head": target.name, "head_epochs": suite.head_epochs, "anchors": suite.anchors})
        for row in stitching:
            kind = "own" if row["encoder"] == target.name else row["encoder"]
            mlflow.log_metrics({f"{space}_{kind}_accuracy": row[space] for space in SPACES})
    return {
        "stitching": stitching,
        "similarity": similarity_rows(encoders, target, suite.similarity_samples),
        "translation": translation_rows(
            encoders,
            target,
            training.decoder(models[target.name]) or heads["absolute"],
            heads["absolute"],
            labels,
            suite.translation_anchors,
        ),  # fmt: skip
    }


def _markdown(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in [list(header), ["---"] * len(header), *cells])


def stitching_tables(results: Mapping[str, Any]) -> str:
    """Markdown: the encoders; every (encoder, head) pair by space; own against cross
    accuracy by space; similarity by space and architecture pair; translation by method and K;
    the encoders skipped and why; the trials that failed."""
    trained = [(e["encoder"], e["train_accuracy"], e["train_seconds"]) for e in results["encoders"] if e["status"] == "completed"]
    parts = [_markdown(("encoder", "train accuracy", "train s"), trained)]
    if "summary" in results:
        pairs = results["stitching"]
        parts.append(_markdown(("encoder", "head", *SPACES), [(r["encoder"], r["head"], *(r[s] for s in SPACES)) for r in pairs]))
        own = {s: mean_std([r[s] for r in pairs if r["encoder"] == r["head"]]) for s in SPACES}
        cross = {s: mean_std([r[s] for r in pairs if r["encoder"] != r["head"]]) for s in SPACES}
        header = ("space", "own (over encoders)", "cross (over ordered pairs encoder != head)")
        parts.append(_markdown(header, [(s, own[s], cross[s]) for s in SPACES]))
        columns = {"Jaccard@10": "jaccard", "MRR": "mrr", "mean cosine": "cosine", "linear CKA": "cka"}
        parts.append(grouped_table(results["similarity"], ("space", "pair"), columns, count="pairs"))
        columns = {"cosine": "cosine", "centred cosine": "centred_cosine", "stitched accuracy": "stitched_accuracy",
                   "target accuracy": "target_accuracy", "stitched (MLP probe)": "probe_stitched_accuracy",
                   "target (MLP probe)": "probe_target_accuracy"}  # fmt: skip
        parts.append(grouped_table(results["translation"], ("method", "anchors"), columns, count="pairs"))
    skipped = "\n".join(f"- skipped: {line}" for line in results["skipped"])
    return "\n\n".join(part for part in (*parts, skipped, failures_note(results["failures"])) if part)


def _flat_metrics(results: Mapping[str, Any]) -> dict[str, float]:
    """The summary and each translation cell's mean stitched accuracy, as MLflow metrics."""
    summary = results["summary"]
    metrics = {k: v for k, v in summary.items() if isinstance(v, float)}
    metrics |= {f"{space}_{kind}_accuracy": v for space, figures in summary["spaces"].items() for kind, v in figures.items()}
    cells: dict[str, list[float]] = {}
    for row in results["translation"]:
        cells.setdefault(f"{row['method']}_k{row['anchors']}_stitched_accuracy", []).append(row["stitched_accuracy"])
    return metrics | {name: float(np.mean(values)) for name, values in cells.items()}


def run_stitching_suite(suite: StitchingSuiteConfig, resources: SweepResources) -> dict[str, Any]:
    """Train the encoders in parallel, then measure with one parallel trial per target
    encoder; writes ``stitching.json`` and ``table.md`` in ``out_dir`` and logs both
    to the suite's MLflow run. Without two trained encoders there is nothing to measure."""
    started = time.perf_counter()
    data = suite.load()
    out_dir = private_dir(Path(suite.out_dir))
    with suite_run(f"bench-stitching-{suite.dataset}", dataclasses.asdict(suite), suite.tracking_uri, suite.experiment) as run:
        trained = run_trials(suite.trials(data), run, resources, lambda record: None)
        completed = [r for r in trained if r["status"] == "completed"]
        measured = run_trials(suite.target_trials(completed), run, resources, lambda record: None) if len(completed) > 1 else []
        results: dict[str, Any] = {"dataset": suite.dataset, "config": dataclasses.asdict(suite)}
        results["encoders"] = [{k: v for k, v in r.items() if k != "weights"} for r in trained]
        results["skipped"] = suite.skipped(data)
        results["trials"] = [{k: r[k] for k in ("trial", "status", "started", "finished")} for r in [*trained, *measured]]
        results["failures"] = [r for r in [*trained, *measured] if r["status"] == "failed"]  # their records hold no weights
        names = [r["encoder"] for r in completed]
        for part in ("stitching", "similarity", "translation"):
            results[part] = [row for r in measured if r["status"] == "completed" for row in r[part]]
        results["stitching"].sort(key=lambda row: (names.index(row["encoder"]), names.index(row["head"])))
        if results["stitching"]:
            results["summary"] = stitching_summary(results["stitching"])
            mlflow.log_metrics(_flat_metrics(results))
        results |= {"wall_seconds": time.perf_counter() - started, "mlflow_run_id": run}
        write_text_atomic(out_dir / "stitching.json", json.dumps(results, indent=2))
        write_text_atomic(out_dir / "table.md", stitching_tables(results) + "\n")
        for name in ("stitching.json", "table.md"):
            mlflow.log_artifact(str(out_dir / name))
    print(stitching_tables(results))
    return results
