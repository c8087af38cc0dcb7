"""An Avalanche logger that writes to MLflow (Avalanche ships none).

Attach it to an ``EvaluationPlugin`` (the centralised learner), or feed it the
metrics a federated client reported (the server, one nested run per client).
"""

from __future__ import annotations

import math
from pathlib import Path

from avalanche.logging import BaseLogger
from mlflow import MlflowClient
from mlflow.entities import RunStatus
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID


class MLflowLogger(BaseLogger):
    """Logs every scalar Avalanche metric to one MLflow run, stepped by ``x_plot``."""

    def __init__(self, run_id: str, client: MlflowClient | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.client = client or MlflowClient()

    @classmethod
    def nested(cls, parent_run_id: str, name: str, client: MlflowClient | None = None) -> MLflowLogger:
        """A logger for a new run under ``parent_run_id``, in the parent's experiment."""
        client = client or MlflowClient()
        parent = client.get_run(parent_run_id)
        run = client.create_run(parent.info.experiment_id, run_name=name, tags={MLFLOW_PARENT_RUN_ID: parent_run_id})
        return cls(run.info.run_id, client)

    def log_single_metric(self, name: str, value: object, x_plot: int) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            self.client.log_metric(self.run_id, name, float(value), step=int(x_plot))

    def log_params(self, params: dict[str, object]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)

    def log_artifact(self, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self, failed: bool = False) -> None:
        status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
        self.client.set_terminated(self.run_id, status)
