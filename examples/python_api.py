"""Run a federation from Python and read its results.

    python examples/python_api.py          # digits: small, a minute or two on a laptop

The results (``results.json``, figures) go to ``runs/python-api`` and MLflow's
``mlflow.db`` under the current folder.
"""

from __future__ import annotations

import relatlas


def main() -> None:
    config = relatlas.RunConfig(
        dataset="digits", num_clients=3, epochs=2, probe_epochs=10, simulation_baselines=False, out_dir="runs/python-api"
    )
    results = relatlas.run(config)
    print(f"status: {results.status}")
    print(f"merged accuracy: {results.merged_accuracy:.3f}")
    print(f"each client's own space: {', '.join(f'{a:.3f}' for a in results.client_accuracy)}")
    print(f"MLflow run {results.mlflow_run_id}; results in {results.out_dir}")


if __name__ == "__main__":
    main()
