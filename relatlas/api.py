"""The Python API: ``relatlas.run(config) -> Results``, what ``relatlas run`` does.

    import relatlas

    results = relatlas.run(relatlas.RunConfig(dataset="digits", rounds=2))
    print(results.merged_accuracy, results.mlflow_run_id)

A config may also be given as a mapping of run-config keys (``{"num-clients": 4}``).
Either way its ``plugins`` are imported before its names are checked, so a
plugin's names validate: ``RunConfig(plugins="my_pkg", encoder="mine")``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relatlas.library_noise import quiet_library_noise
from relatlas.server.config import RunConfig

__all__ = ["Results", "RunConfig", "run"]


@dataclass(frozen=True)
class Results:
    """What a finished (or stopped) run wrote to ``out_dir/results.json``.

    The headline figures are typed fields; ``raw`` is the whole file, with every
    baseline and per-round metric the run recorded.
    """

    status: str
    """``completed``, ``failed`` or ``interrupted``."""
    config: RunConfig
    """The run's configuration, as it ran."""
    merged_accuracy: float | None
    """The label-free merge's probe accuracy, last round; ``None`` if no round finished."""
    client_accuracy: tuple[float, ...]
    """Each client's own space's probe accuracy, last round (empty with ``client-scores`` off)."""
    rounds: tuple[dict[str, Any], ...]
    """Every round's metrics, in order."""
    failures: tuple[dict[str, Any], ...]
    """The clients that failed or were dropped, per round, with the reason."""
    mlflow_run_id: str
    """The MLflow run that holds the same metrics, the config as params and the figures."""
    wall_seconds: float
    """The run's duration."""
    out_dir: Path
    """The folder of ``results.json`` and the figures."""
    error: str | None
    """Why the run stopped, unless it completed."""
    raw: Mapping[str, Any]
    """The whole ``results.json``: every baseline and per-round metric the run recorded."""

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @classmethod
    def from_file(cls, path: Path) -> Results:
        """Read a run's ``results.json`` (JSON only: nothing on disk is unpickled)."""
        raw = json.loads(Path(path).read_text())
        return cls(
            status=raw["status"],
            config=as_config(raw["config"]),
            merged_accuracy=raw.get("merged_accuracy"),
            client_accuracy=tuple(raw.get("client_accuracy") or ()),
            rounds=tuple(raw["rounds"]),
            failures=tuple(raw["failures"]),
            mlflow_run_id=raw["mlflow_run_id"],
            wall_seconds=raw["wall_seconds"],
            out_dir=Path(path).parent,
            error=raw.get("error"),
            raw=raw,
        )


def as_config(config: RunConfig | Mapping[str, Any]) -> RunConfig:
    """``config`` itself, or the ``RunConfig`` of run-config keys."""
    if isinstance(config, RunConfig):
        return config
    return RunConfig.from_mapping(config)


def run(config: RunConfig | Mapping[str, Any]) -> Results:
    """Run a federation on Flower's simulation engine (Ray) in this process and
    return its results; ``results.json``, the figures and the MLflow run are
    written as with ``relatlas run``.

    A run whose round fails returns with ``status == "failed"`` unless the engine
    itself raised; bad settings, data or encoders raise ``ConfigError`` (or
    ``DatasetError``, ``SplitError``) in one line before Ray starts.
    Resuming a run that completed returns its results without running anything.
    """
    config = as_config(config)
    quiet_library_noise()  # before the run's libraries load (relatlas/library_noise.py)
    from relatlas.server.algorithms import algorithm_of, run_algorithm  # Ray and Flower too
    from relatlas.server.checkpoint import Checkpoint, check_resumable, completed_results
    from relatlas.server.preflight import refuse_bad_input  # torch: only when a run starts

    done = completed_results(Path(config.resume)) if config.resume else None
    if done is not None:
        check_resumable(config, Checkpoint.load(Path(config.resume)))  # a changed config is refused, as on the CLI
        return Results.from_file(done)

    algorithm = algorithm_of(config)  # ``--algorithm``: relatlas's own run by default (server/algorithms.py)
    refuse_bad_input(config)
    run_algorithm(config, algorithm)
    return Results.from_file(Path(config.out_dir) / "results.json")
