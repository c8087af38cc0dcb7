"""What ``relatlas run`` prints: the results table of a finished run."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from relatlas.api import Results


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "  ".join(_fmt(v) for v in value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
    return str(value)


def results_table(results: dict[str, Any]) -> Table:
    aggregation = results["config"]["aggregation"]
    table = Table(title=f"relatlas: {results['config']['dataset']}, {results['config']['split']}, status {results['status']}")
    table.add_column("space")
    table.add_column("value", justify="right")
    rows = [
        (f"merged ({aggregation}, label-free)", "merged_accuracy"),
        ("each client's own space", "client_accuracy"),
        ("merged head on each client (stitching)", "stitched_accuracy"),
        ("stitching, on the classes each client trained on", "stitched_own_classes_accuracy"),
        ("stitching, on the classes each client never saw", "stitched_other_classes_accuracy"),
        ("concatenated relative spaces", "concat_accuracy"),
        ("concatenated absolute embeddings", "concat_absolute_accuracy"),
        ("centralised end-to-end", "centralized_accuracy"),
        ("global model (fedavg, centralised)", "global_accuracy"),
        ("each client's own model (its head)", "client_model_accuracy"),
        ("each client, nearest global prototype (fedproto)", "client_prototype_accuracy"),
        ("linear CKA(merged, centralised)", "cka_merged_centralized"),
        ("owner protocol (paper; leaks labels)", "owner_accuracy"),
        ("owner protocol, owners shuffled (control)", "owner_shuffled_accuracy"),
        ("continual: merged average accuracy", "average_accuracy"),
        ("continual: merged forgetting", "forgetting"),
        ("continual: each local model's average accuracy", "client_average_accuracy"),
        ("continual: each local model's forgetting", "client_forgetting"),
        ("payload bytes per client", "payload_bytes_per_client"),
        ("wall seconds", "wall_seconds"),
        ("MLflow run", "mlflow_run_id"),
    ]
    for label, key in rows:
        if key in results:
            table.add_row(label, _fmt(results[key]))
    return table


def print_report(results: Results, tracking_uri: str) -> int:
    """Print a finished run's table; exit status 1 unless it completed."""
    console = Console()
    console.print(results_table(dict(results.raw)))
    console.print(f"results: {results.out_dir / 'results.json'}")
    console.print(f"MLflow run id: {results.mlflow_run_id} ({tracking_uri})")
    return 0 if results.completed else 1


def print_run_failure(message: str) -> None:
    Console(soft_wrap=True).print(f"relatlas: {message}", style="red", markup=False, highlight=False)  # one line, as given
