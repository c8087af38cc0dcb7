"""The run configuration: one validated dataclass shared by the CLI, the
ServerApp and ``[tool.flwr.app.config]``, whose keys are the field names with
hyphens."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from relatlas.clients.continual_config import ContinualConfig
from relatlas.clients.encoder_spec import EncoderSpec

from relatlas.registries import (
    AGGREGATIONS,
    ANCHOR_MODES,
    REGULARIZERS,
    SPLITS,
    STRATEGIES,
    STREAMS,
    TRANSLATIONS,
)  # fmt: skip

MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A run-config value that is missing, of the wrong type or out of range."""


# The allowed values of the fields that name a choice: registries grow as plugins register.
CHOICES: dict[str, Collection[str]] = {
    "split": SPLITS,
    "aggregation": AGGREGATIONS,
    "anchor_sampling": ("uniform", "stratified"),
    "anchors_mode": ANCHOR_MODES,
    "translation": TRANSLATIONS,
    "merge_weights": ("uniform", "samples"),
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
    encoder: str = "auto"  # per client, cycled: name[:key=value...], comma-separated (clients/encoder_spec.py)
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
    plugins: str = ""  # comma-separated modules that register entries, imported by every process (relatlas.plugins)

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
        self._check_encoders()
        self._check_payload()
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

    def _check_payload(self) -> None:
        """The payload parses and suits the aggregation; imported here, not at module
        level, because they pull in torch, which ``relatlas --help`` must not."""
        from relatlas.aggregation.aggregators import required_similarities
        from relatlas.clients.payload import payload_codec

        try:
            payload_codec(self.payload).check(required_similarities(self.aggregation), self.anchors)
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def _check_anchors_mode(self) -> None:
        from relatlas.clients.anchoring import TWO_PHASE_MODES

        if self.anchors_mode != "shared" and self.split == "disjoint-classes":
            raise ConfigError(
                f"anchors-mode {self.anchors_mode} pairs anchors by classes all clients hold; the disjoint-classes split has none"
            )
        if self.anchors_mode == "bootstrapped" and self.min_clients < 2:
            raise ConfigError("anchors-mode bootstrapped matches clients to each other: set min-clients >= 2")
        if self.anchors_mode in TWO_PHASE_MODES and self.seed_anchors > self.anchors:
            raise ConfigError(f"seed-anchors ({self.seed_anchors}) cannot exceed anchors ({self.anchors}): seeds are anchors")

    def _check_encoders(self) -> None:
        try:
            for spec in EncoderSpec.parse_list(self.encoder):
                spec.entry()
        except ValueError as err:
            raise ConfigError(f"encoder: {err}") from None

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
