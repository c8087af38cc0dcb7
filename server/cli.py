"""The ``relatlas`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from benchmarks.anchors_suite import AnchorSuiteConfig, run_anchor_suite
from benchmarks.continual_suite import SuiteConfig, run_suite
from benchmarks.datasets import DatasetError, load_dataset
from benchmarks.splits import SplitError, plan_for_task
from benchmarks.streams import class_schedule
from server.config import ConfigError, RunConfig

ALIASES = {"num-clients": ["--clients"], "out-dir": ["--out"], "learning-rate": ["--lr"]}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per run-config key, with the same name and the same default."""
    for field in dataclasses.fields(RunConfig):
        key = field.name.replace("_", "-")
        kind = type(field.default)
        parser.add_argument(
            f"--{key}",
            *ALIASES.get(key, []),
            dest=field.name,
            type=str if kind is bool else kind,
            default=None,
            metavar=kind.__name__.upper(),
            help=f"default: {field.default!r}",
        )


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    given = {f.name.replace("_", "-"): getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    return RunConfig.from_mapping({key: value for key, value in given.items() if value is not None})


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
        ("concatenated relative spaces", "concat_accuracy"),
        ("concatenated absolute embeddings", "concat_absolute_accuracy"),
        ("centralised end-to-end", "centralized_accuracy"),
        ("linear CKA(merged, centralised)", "cka_merged_centralized"),
        ("owner protocol (paper; leaks labels)", "owner_accuracy"),
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


def _refuse_bad_data(config: RunConfig) -> None:
    """Load the data and make the split (and class schedule) before Ray starts; a
    bad dataset or size fails here in one line. Later loads hit the cache."""
    dataset = load_dataset(config.dataset, config.data_root or None, config.seed)
    plan_for_task(dataset.y_train, config.to_mapping())
    if config.scenario == "continual":
        class_schedule(dataset.num_classes, config.experiences, config.stream, config.seed)


def _run(args: argparse.Namespace) -> int:
    from server.simulation import run_simulation

    config = _config_from_args(args)
    _refuse_bad_data(config)
    console = Console()
    try:
        run_simulation(config, client_cpus=args.client_cpus, client_gpus=args.client_gpus)
    except Exception as err:  # noqa: BLE001 - reported in one line; results.json keeps finished rounds
        cause = err.__cause__ or err
        console.print(f"[red]relatlas: run failed: {type(cause).__name__}: {cause}[/red]")
        return 1
    results = json.loads((Path(config.out_dir) / "results.json").read_text())
    console.print(results_table(results))
    console.print(f"results: {Path(config.out_dir) / 'results.json'}")
    console.print(f"MLflow run id: {results['mlflow_run_id']} ({config.tracking_uri})")
    return 0


def _bench_anchors(args: argparse.Namespace) -> int:
    suite = AnchorSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, seed_counts=tuple(args.seed_anchors),
        translation_counts=tuple(args.translation_seed_anchors), seeds=tuple(args.seeds), modes=tuple(args.modes),
        num_clients=args.clients,
        epochs=args.epochs, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    runs = suite.run_configs()  # validates every config before the first run
    _refuse_bad_data(runs[0][2])
    print(f"relatlas bench anchors: {len(runs)} federations, results in {suite.out_dir}/table.md", flush=True)
    run_anchor_suite(suite)
    return 0


def _bench(args: argparse.Namespace) -> int:
    suite = SuiteConfig(
        dataset=args.dataset, data_root=args.data_root, experiences=args.experiences, strategies=tuple(args.strategies),
        buffers=tuple(args.buffers), seeds=tuple(args.seeds), settings=tuple(args.settings), num_clients=args.clients,
        epochs=args.epochs, out_dir=args.out, tracking_uri=args.tracking_uri, casper_rho=args.casper_rho,
        casper_classes=args.casper_classes, casper_per_class=args.casper_per_class, casper_k=args.casper_k,
    )  # fmt: skip
    runs = suite.run_configs()  # validates every config before the first run
    _refuse_bad_data(runs[0][1])
    print(f"relatlas bench continual: {len(runs)} runs, results in {suite.out_dir}/table.md", flush=True)
    run_suite(suite)
    return 0


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="run an MLflow-tracked benchmark suite")
    suites = bench.add_subparsers(dest="suite", required=True)
    continual = suites.add_parser("continual", help="Replay / ER-ACE with and without CaSpeR, centralised and federated")
    defaults = SuiteConfig()
    continual.add_argument("--dataset", default=defaults.dataset)
    continual.add_argument("--data-root", default=defaults.data_root)
    continual.add_argument("--experiences", type=int, default=defaults.experiences)
    continual.add_argument("--strategies", nargs="+", default=list(defaults.strategies))
    continual.add_argument("--buffers", nargs="+", type=int, default=list(defaults.buffers))
    continual.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    continual.add_argument("--settings", nargs="+", default=list(defaults.settings))
    continual.add_argument("--clients", type=int, default=defaults.num_clients)
    continual.add_argument("--epochs", type=int, default=defaults.epochs)
    continual.add_argument("--casper-rho", type=float, default=defaults.casper_rho)
    continual.add_argument("--casper-classes", type=int, default=defaults.casper_classes)
    continual.add_argument("--casper-per-class", type=int, default=defaults.casper_per_class)
    continual.add_argument("--casper-k", type=int, default=defaults.casper_k)
    continual.add_argument("--out", default=defaults.out_dir)
    continual.add_argument("--tracking-uri", default=defaults.tracking_uri)
    continual.set_defaults(handler=_bench)

    anchors = suites.add_parser("anchors", help="disjoint anchor modes against shared anchors; translation quality")
    defaults = AnchorSuiteConfig()
    anchors.add_argument("--dataset", default=defaults.dataset)
    anchors.add_argument("--data-root", default=defaults.data_root)
    anchors.add_argument("--seed-anchors", nargs="+", type=int, default=list(defaults.seed_counts), help="K of the federations")
    anchors.add_argument(
        "--translation-seed-anchors", nargs="+", type=int, default=list(defaults.translation_counts), help="K of the translations"
    )
    anchors.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    anchors.add_argument("--modes", nargs="+", default=list(defaults.modes), help="federations to run (default: all)")
    anchors.add_argument("--clients", type=int, default=defaults.num_clients)
    anchors.add_argument("--epochs", type=int, default=defaults.epochs)
    anchors.add_argument("--out", default=defaults.out_dir)
    anchors.add_argument("--tracking-uri", default=defaults.tracking_uri)
    anchors.set_defaults(handler=_bench_anchors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relatlas", description="Federated aggregation of relative latent spaces.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a federation on Flower's simulation engine")
    _add_config_options(run)
    run.add_argument("--client-cpus", type=float, default=1.0, help="CPUs per simulated client (default: 1)")
    run.add_argument("--client-gpus", type=float, default=0.0, help="GPUs per simulated client (default: 0)")
    run.set_defaults(handler=_run)
    _add_bench_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logger = logging.getLogger("relatlas")
    logger.addHandler(RichHandler(show_path=False))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, DatasetError, SplitError) as err:
        print(f"relatlas: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
