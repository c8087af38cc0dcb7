"""What ``relatlas bench perf`` measures and on what (``benchmarks/perf.py``): its
sections, sizes and the federation each runs. Light to import, so that
``relatlas bench perf --help`` reads its defaults without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relatlas.server.config import ConfigError, RunConfig

SECTIONS = ("kernels", "overhead", "scale", "payload", "startup", "backbone", "messages", "gpu")


@dataclass(frozen=True)
class PerfConfig:
    dataset: str = "fashion-mnist"
    data_root: str = ""
    gemm_shape: tuple[int, int, int] = (20_000, 256, 1024)  # N samples, d dimensions, m anchors
    distance_shape: tuple[int, int, int] = (20_000, 64, 256)
    repeats: int = 5
    overhead_turns: int = 2  # runs of each side of overhead_ratio, in turns: each side's fastest counts
    scale_clients: tuple[int, ...] = (10, 100, 1000, 10_000)
    scale_all_train_up_to: int = 1000  # rows of more clients train a seeded sample of them each round
    scale_sampled_per_round: int = 100  # the sample: a 100-client round, among 10,000 registered nodes
    scale_eval_samples: int = 1000
    payloads: tuple[str, ...] = ("fp32", "fp16", "topk:16", "topk:4")
    startup_samples: int = 5  # fresh processes per startup figure (their median)
    backbone_rows: int = 1000  # training rows of the frozen backbone's client
    backbone_side: int = 64  # the side its images are resized to
    backbone_epochs: int = 4
    sections: tuple[str, ...] = SECTIONS
    out_dir: str = "runs/bench-perf"
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "relatlas-bench"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sections) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"unknown perf sections {unknown}; choose from {', '.join(SECTIONS)}")
        if self.overhead_turns < 1:
            raise ConfigError(f"overhead-turns must be 1 or more; got {self.overhead_turns}")

    def run_config(self, name: str, **overrides: Any) -> RunConfig:
        """The federation every section runs: 3 MLP clients, 3 epochs, baselines off."""
        values = dict(
            dataset=self.dataset, data_root=self.data_root, encoder="mlp", simulation_baselines=False,
            tracking_uri=self.tracking_uri, experiment=self.experiment, out_dir=str(Path(self.out_dir) / name),
        )  # fmt: skip
        return RunConfig(**(values | overrides))
