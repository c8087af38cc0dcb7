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
    from relatlas.aggregation.aggregators import needs_labels  # torch, which ``relatlas --help`` must not import

    aggregation = results["config"]["aggregation"]
    merge = "combination learned from the anchors' labels" if needs_labels(aggregation) else "label-free"
    table = Table(title=f"relatlas: {results['config']['dataset']}, {results['config']['split']}, status {results['status']}")
    table.add_column("space")
    table.add_column("value", justify="right")
    rows = [
        (f"merged ({aggregation}, {merge})", "merged_accuracy"),
        ("each client's own space", "client_accuracy"),
        ("each client's own model, its held-back local test rows", "client_local_test_accuracy"),
        ("average client test accuracy", "average_client_test_accuracy"),
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


# the per-round table's columns: (heading, key of the curve, per round or per client)
CURVE_COLUMNS = (
    ("merged", "merged_accuracy"),
    ("own space", "client_accuracy"),
    ("local test", "client_local_test_accuracy"),
    ("average client test", "average_client_test_accuracy"),
    ("stitched, seen classes", "stitched_own_classes_accuracy"),
    ("stitched, unseen classes", "stitched_other_classes_accuracy"),
)


def rounds_table(results: dict[str, Any]) -> Table | None:
    """The round-by-round curve (``server/client_curves.py``), one row a round, the
    clients' values in partition order; None for a run with no curve or a single round."""
    curves = results.get("client_curves")
    if not curves or len(curves["rounds"]) < 2:
        return None
    clients = curves["clients"]
    table = Table(title=f"round by round; clients {', '.join(clients)} in that order")
    columns = [(label, key) for label, key in CURVE_COLUMNS if key in curves or any(key in c for c in clients.values())]
    table.add_column("round", justify="right")
    for label, _ in columns:
        table.add_column(label, justify="right")
    for i, number in enumerate(curves["rounds"]):
        values = [curves[key][i] if key in curves else [c[key][i] for c in clients.values() if key in c] for _, key in columns]
        table.add_row(str(number), *map(_fmt, values))
    return table


def print_report(results: Results, tracking_uri: str) -> int:
    """Print a finished run's tables; exit status 1 unless it completed."""
    console = Console()
    console.print(results_table(dict(results.raw)))
    rounds = rounds_table(dict(results.raw))
    if rounds is not None:
        console.print(rounds)
    console.print(f"results: {results.out_dir / 'results.json'}")
    console.print(f"MLflow run id: {results.mlflow_run_id} ({tracking_uri})")
    return 0 if results.completed else 1


def print_run_failure(message: str) -> None:
    Console(soft_wrap=True).print(f"relatlas: {message}", style="red", markup=False, highlight=False)  # one line, as given
