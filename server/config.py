"""The run configuration: one validated dataclass shared by the CLI, the
ServerApp and ``[tool.flwr.app.config]``, whose keys are the field names with
hyphens."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relatlas.aggregation.aggregators import AGGREGATIONS, required_similarities
from relatlas.benchmarks.splits import SPLITS
from relatlas.benchmarks.streams import STREAMS
from relatlas.clients.continual import REGULARIZERS, STRATEGIES, ContinualConfig
from relatlas.clients.payload import PayloadFormat

from relatlas.registries import ANCHOR_MODES, TRANSLATIONS

MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A run-config value that is missing, of the wrong type or out of range."""


# The allowed values of the fields that name a choice (AGGREGATIONS grows as merges register).
CHOICES: dict[str, Collection[str]] = {
    "split": SPLITS,
    "aggregation": AGGREGATIONS,
    "anchor_sampling": ("uniform", "stratified"),
    "anchors_mode": ANCHOR_MODES,
    "translation": TRANSLATIONS,
    "merge_weights": ("uniform", "samples"),
    "encoder": ("auto", "mlp", "cnn"),
    "scenario": ("static", "continual"),
    "stream": STREAMS,
    "strategy": STRATEGIES,
    "regularizer": REGULARIZERS,
}


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a federated run. See the README for what each one does."""

    dataset: str = "digits"
    data_root: str = ""
    split: str = "shared-classes"
    num_clients: int = 3
    shared_classes: int = 4
    novel_classes: int = 0  # 0: (classes - S) // clients
    alpha: float = 0.5
    anchors: int = 64
    anchor_sampling: str = "uniform"
    anchors_mode: str = "shared"
    seed_anchors: int = 8  # K public seed pairs of the bootstrapped and translated modes
    translation: str = "procrustes"
    aggregation: str = "mean"
    payload: str = "fp32"  # how clients pack relative spaces: fp32, fp16, topk:K[:P]
    payload_noise: float = 0.0  # sigma of the Gaussian noise clients add to their relative spaces
    merge_weights: str = "uniform"
    outlier_threshold: float = 0.0  # drop a client whose space is this many times the median distance (0: off)
    rounds: int = 1
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    embedding_dim: int = 64
    encoder: str = "auto"
    seed: int = 0
    min_clients: int = 2
    node_timeout: float = 120.0
    round_timeout: float = 900.0
    num_cpus: float = 1.0  # per simulated client (a Ray actor)
    num_gpus: float = 0.0  # per simulated client; fractions share a GPU
    ray_address: str = ""  # join this Ray cluster ("auto": the local one); empty: RAY_ADDRESS, else a new local instance
    probe_epochs: int = 30
    eval_samples: int = 0  # a seeded stratified subset of the test set to project and score; 0: all of it
    client_scores: bool = True  # static: also score each client's space, stitching and the concatenation
    scenario: str = "static"
    experiences: int = 5
    stream: str = "class-incremental"
    strategy: str = ContinualConfig.strategy
    regularizer: str = ContinualConfig.regularizer
    buffer: int = ContinualConfig.buffer
    casper_rho: float = ContinualConfig.casper_rho
    casper_classes: int = ContinualConfig.casper_classes  # 0: the classes of the experience being trained
    casper_batch: int = ContinualConfig.casper_batch  # 0: batch-size
    casper_k: int = ContinualConfig.casper_k
    simulation_baselines: bool = True
    out_dir: str = "runs/latest"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas"
    parent_run: str = ""  # MLflow run id to nest this run under (benchmark suites)
    resume: str = ""  # the out-dir of a killed run to continue from its checkpoint (server/checkpoint.py)

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{_key(name)} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        positive = ("num_clients", "anchors", "rounds", "epochs", "batch_size", "embedding_dim", "min_clients",
                    "probe_epochs", "learning_rate", "seed_anchors", "num_cpus", "node_timeout", "round_timeout", "alpha",
                    "experiences", "buffer", "casper_k")  # fmt: skip
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{_key(name)} must be positive; got {getattr(self, name)}")
        for name in ("shared_classes", "novel_classes", "seed", "casper_rho", "casper_classes", "casper_batch", "num_gpus",
                     "eval_samples", "payload_noise", "outlier_threshold"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ConfigError(f"{_key(name)} must be zero or more; got {getattr(self, name)}")
        if self.seed > MAX_SEED:
            raise ConfigError(f"seed must be in 0..{MAX_SEED} (NumPy's seed range); got {self.seed}")
        if self.min_clients > self.num_clients:
            raise ConfigError(f"min-clients ({self.min_clients}) cannot exceed num-clients ({self.num_clients})")
        self._check_anchors_mode()
        try:
            payload = PayloadFormat.parse(self.payload)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if payload.kind == "topk" and (required_similarities(self.aggregation) != ("cosine",) or payload.k > self.anchors):
            cosine_only = [name for name, method in AGGREGATIONS.items() if method.similarities == ("cosine",)]
            raise ConfigError(
                f"payload {self.payload} keeps each row's largest cosines: it needs K <= anchors and an aggregation of "
                f"cosines only ({', '.join(cosine_only)})"
            )
        if self.scenario == "continual" and self.rounds not in (1, self.experiences):
            raise ConfigError(
                f"in the continual scenario each round is one experience: leave rounds at 1 or set it to {self.experiences}"
            )
        if self.regularizer == "casper" and self.strategy == "naive":
            raise ConfigError(
                "regularizer casper draws its batches from a replay buffer; strategy naive has none: use replay, er-ace or der"
            )
        graph_batch = self.casper_batch or self.batch_size
        if self.regularizer == "casper" and not self.casper_k < graph_batch >= self.casper_classes + 2:
            raise ConfigError(
                f"a CaSpeR graph batch of {graph_batch} (casper-batch, or batch-size if 0) needs casper-k below it "
                f"and casper-classes + 2 at most; got casper-k {self.casper_k}, casper-classes {self.casper_classes}"
            )

    def _check_anchors_mode(self) -> None:
        """The anchor mode's own conditions on the run (``AnchorMode.check``)."""
        try:
            ANCHOR_MODES.get(self.anchors_mode).check(self)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    @property
    def num_rounds(self) -> int:
        """Rounds to run: one per experience in the continual scenario."""
        return self.experiences if self.scenario == "continual" else self.rounds

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> RunConfig:
        """Build from hyphenated keys (a Flower run config), checking names and types."""
        fields = {_key(f.name): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown run-config keys {unknown}; known keys: {', '.join(sorted(fields))}")
        kwargs = {}
        for key, value in values.items():
            kind = type(getattr(cls, fields[key].name))
            kwargs[fields[key].name] = _coerce(key, value, kind)
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, Any]:
        """Hyphenated keys, as in a Flower run config."""
        return {_key(name): value for name, value in dataclasses.asdict(self).items()}


def _key(field_name: str) -> str:
    return field_name.replace("_", "-")


def _coerce(key: str, value: Any, kind: type) -> Any:
    """Accept a value of the field's type (ints for floats too); refuse anything else."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be {kind.__name__}; got {value!r}")
