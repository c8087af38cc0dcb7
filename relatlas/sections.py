"""The run configuration's sections: data, model, anchors, merge (aggregation
and payload), continual, runtime, evaluation and tracking.

Each section is a frozen dataclass that checks its own fields when built, with
the allowed names read from the registries (so a plug-in's entry is allowed as
soon as it registers). ``RunConfig`` (``server/config.py``) is their union and
checks only what spans sections.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import ClassVar

from relatlas.encoder_spec import EncoderSpec
from relatlas.registries import (
    AGGREGATIONS,
    ALGORITHMS,
    ANCHOR_MODES,
    ATLAS_OBJECTIVES,
    DATASETS,
    ENCODERS,
    PAYLOADS,
    PRECISIONS,
    REGULARIZERS,
    SPLITS,
    STRATEGIES,
    STREAMS,
    TRANSLATIONS,
)
from relatlas.registry import split_spec
from relatlas.section_base import ConfigError, Section

MAX_SEED = 2**32 - 1
MLFLOW_NAME_LENGTH = 256  # an experiment's name in MLflow's SQL stores (experiments.name is VARCHAR(256))
NODE_DATA = "node"  # a client-data entry: the SuperNode's own ``--node-config data=SPEC``
NODE_DATA_KEY = "data"  # the SuperNode's node-config key naming its own training data


@dataclass(frozen=True)
class DataSection(Section):
    """Which dataset, and how its classes and samples are split over the clients."""

    choices: ClassVar[dict[str, Collection[str]]] = {"split": SPLITS}
    specs: ClassVar[dict[str, Collection[str]]] = {"dataset": DATASETS}
    positive: ClassVar[tuple[str, ...]] = ("num_clients", "alpha")
    non_negative: ClassVar[tuple[str, ...]] = ("shared_classes", "novel_classes", "local_test_fraction", "public_pool")

    dataset: str = "digits"
    data_root: str = ""
    split: str = "shared-classes"
    num_clients: int = 3
    shared_classes: int = 4
    novel_classes: int = 0  # 0: (classes - S) // clients
    alpha: float = 0.5
    client_data: str = ""  # per client, cycled: its own training data (dataset specs, or node); empty: a split of dataset
    class_names: str = ""  # the run's label list, comma-separated; empty: the dataset's class names (or 0..C-1)
    local_test_fraction: float = 0.0  # of each client's training rows, held back to score its own model (0: none)
    public_pool: int = 0  # training rows held out of every client's partition: the public pool the atlas is made of

    def validate(self) -> None:
        if not self.local_test_fraction < 1:
            raise ConfigError(
                f"local-test-fraction must be below 1 (a client keeps rows to train on); got {self.local_test_fraction}"
            )
        for spec in client_data_specs(self.client_data):
            if spec != NODE_DATA and split_spec(spec)[0] not in DATASETS:
                raise ConfigError(
                    f"client-data entry {spec!r} is neither {NODE_DATA} nor a registered dataset: {', '.join(DATASETS)}"
                )
        names = self.class_names.split(",") if self.class_names else []
        if any(not name.strip() for name in names) or len(set(names)) != len(names):
            raise ConfigError(f"class-names must be distinct non-empty names, comma-separated; got {self.class_names!r}")


def client_data_specs(text: str) -> tuple[str, ...]:
    """The run's ``client-data`` list, in client order (empty: the clients split ``dataset``)."""
    return tuple(spec.strip() for spec in text.split(",")) if text.strip() else ()


@dataclass(frozen=True)
class ModelSection(Section):
    """What each client trains, and how long."""

    choices: ClassVar[dict[str, Collection[str]]] = {"atlas_objective": ATLAS_OBJECTIVES, "precision": PRECISIONS}
    specs: ClassVar[dict[str, Collection[str]]] = {"encoder": ENCODERS}
    positive: ClassVar[tuple[str, ...]] = ("epochs", "batch_size", "learning_rate", "embedding_dim")

    encoder: str = "auto"  # per client, cycled: name[:key=value...], comma-separated (relatlas/encoder_spec.py)
    embedding_dim: int = 64
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    precision: str = "fp32"  # the arithmetic of training and projection on CUDA: fp32, tf32, bf16 (clients/precision.py)
    atlas_weight: float = 0.0  # W: the client adds W x the atlas objective on public-pool batches (0: no feedback)
    atlas_objective: str = "neighbourhood"
    atlas_leave_one_out: bool = False  # send each client the merge of the other clients' pool rows, not of all

    def validate(self) -> None:
        if not (math.isfinite(self.atlas_weight) and self.atlas_weight >= 0):
            raise ConfigError(f"atlas-weight must be a finite number, zero or more; got {self.atlas_weight}")
        try:
            for spec in EncoderSpec.parse_list(self.encoder):
                spec.entry()
        except ValueError as err:
            raise ConfigError(f"encoder: {err}") from None


@dataclass(frozen=True)
class AnchorsSection(Section):
    """The anchors clients project on, and how they are matched across clients."""

    choices: ClassVar[dict[str, Collection[str]]] = {
        "anchor_sampling": ("uniform", "stratified"), "anchors_mode": ANCHOR_MODES, "translation": TRANSLATIONS,
    }  # fmt: skip
    positive: ClassVar[tuple[str, ...]] = ("anchors", "seed_anchors")

    anchors: int = 64
    anchor_sampling: str = "uniform"
    anchors_mode: str = "shared"
    seed_anchors: int = 8  # K public seed pairs of the bootstrapped and translated modes
    translation: str = "procrustes"


@dataclass(frozen=True)
class MergeSection(Section):
    """How clients pack their relative spaces, and how the server merges them."""

    choices: ClassVar[dict[str, Collection[str]]] = {"aggregation": AGGREGATIONS, "merge_weights": ("uniform", "samples")}
    specs: ClassVar[dict[str, Collection[str]]] = {"payload": PAYLOADS}
    non_negative: ClassVar[tuple[str, ...]] = ("payload_noise", "outlier_threshold", "max_hostile")

    aggregation: str = "mean"
    payload: str = "fp32"  # how clients pack relative spaces: fp32, fp16, topk:K[:P]
    payload_noise: float = 0.0  # sigma of the Gaussian noise clients add to their relative spaces
    merge_weights: str = "uniform"
    outlier_threshold: float = 0.0  # drop a client whose space is this many times the median distance (0: off)
    max_hostile: float = 0.0  # hostile clients the robust merges withstand: a count, or a fraction below 1 (0: none declared)


@dataclass(frozen=True)
class ContinualSection(Section):
    """The continual scenario: a stream of experiences, one per round."""

    choices: ClassVar[dict[str, Collection[str]]] = {
        "scenario": ("static", "continual"), "stream": STREAMS, "strategy": STRATEGIES, "regularizer": REGULARIZERS,
    }  # fmt: skip
    positive: ClassVar[tuple[str, ...]] = ("experiences", "buffer", "casper_k")
    non_negative: ClassVar[tuple[str, ...]] = ("casper_rho", "casper_classes", "casper_batch")

    scenario: str = "static"
    experiences: int = 5
    stream: str = "class-incremental"
    strategy: str = "replay"
    regularizer: str = "none"
    buffer: int = 200
    casper_rho: float = 0.01
    casper_classes: int = 0  # 0: the classes the stream gives each experience (its classes per task)
    casper_batch: int = 0  # 0: batch-size
    casper_k: int = 10

    def validate(self) -> None:
        if self.regularizer == "casper" and self.strategy == "naive":
            raise ConfigError(
                "regularizer casper draws its batches from a replay buffer; strategy naive has none: use replay, er-ace or der"
            )


@dataclass(frozen=True)
class RuntimeSection(Section):
    """Rounds, seeds, waiting, and the resources of each simulated client."""

    specs: ClassVar[dict[str, Collection[str]]] = {"algorithm": ALGORITHMS}
    positive: ClassVar[tuple[str, ...]] = ("rounds", "min_clients", "node_timeout", "round_timeout", "num_cpus")
    non_negative: ClassVar[tuple[str, ...]] = ("seed", "num_gpus", "min_train_nodes")

    rounds: int = 1
    fraction_train: float = 1.0  # Flower's name: of the clients, the seeded share trained each round (1: every one)
    min_train_nodes: int = 0  # Flower's name: at least this many trained each round, whatever fraction-train gives
    seed: int = 0
    min_clients: int = 2
    node_timeout: float = 120.0
    round_timeout: float = 900.0
    num_cpus: float = 1.0  # per simulated client (a Ray actor)
    num_gpus: float = 0.0  # per simulated client; fractions share a GPU
    ray_address: str = ""  # join this Ray cluster ("auto": the local one); empty: RAY_ADDRESS, else a new local instance
    plugins: str = ""  # comma-separated modules that register entries, imported by every process (relatlas.plugins)
    algorithm: str = "relatlas"  # the federated algorithm: NAME[:ARGUMENT] of relatlas.registries.ALGORITHMS

    def validate(self) -> None:
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed must be in 0..{MAX_SEED} (NumPy's seed range); got {self.seed}")
        if not 0 < self.fraction_train <= 1:
            raise ConfigError(
                f"fraction-train must be in (0, 1], the share of the clients trained a round; got {self.fraction_train}"
            )
        name = split_spec(self.algorithm)[0]
        if name not in ALGORITHMS:
            raise ConfigError(f"unknown algorithm {name!r}; registered: {', '.join(ALGORITHMS)}")


@dataclass(frozen=True)
class EvaluationSection(Section):
    """How the server scores the merged space and the baselines."""

    positive: ClassVar[tuple[str, ...]] = ("probe_epochs",)
    non_negative: ClassVar[tuple[str, ...]] = ("eval_samples",)

    probe_epochs: int = 30
    eval_samples: int = 0  # a seeded stratified subset of the test set to project and score; 0: all of it
    client_scores: bool = True  # static: also score each client's space, stitching and the concatenation
    simulation_baselines: bool = True


@dataclass(frozen=True)
class TrackingSection(Section):
    """Where results, MLflow runs and checkpoints go."""

    longest: ClassVar[dict[str, int]] = {"experiment": MLFLOW_NAME_LENGTH}

    out_dir: str = "runs/latest"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas"
    parent_run: str = ""  # MLflow run id to nest this run under (benchmark suites)
    resume: str = ""  # the out-dir of a killed run to continue from its checkpoint (server/checkpoint.py)


SECTIONS: tuple[type[Section], ...] = (
    DataSection, ModelSection, AnchorsSection, MergeSection, ContinualSection, RuntimeSection, EvaluationSection,
    TrackingSection,
)  # fmt: skip
