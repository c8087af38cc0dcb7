"""The ``relatlas`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relatlas.benchmarks.anchors_suite import AnchorSuiteConfig, run_anchor_suite
from relatlas.benchmarks.atlas_suite import AtlasSuiteConfig, run_atlas_suite
from relatlas.benchmarks.continual_suite import SuiteConfig, run_suite
from relatlas.benchmarks.datasets import DatasetError, load_dataset
from relatlas.benchmarks.perf import SECTIONS, PerfConfig, run_perf
from relatlas.benchmarks.splits import SplitError, plan_for_task
from relatlas.benchmarks.stitching_suite import StitchingSuiteConfig, run_stitching_suite
from relatlas.benchmarks.streams import class_schedule
from relatlas.benchmarks.sweep import SweepResources
from relatlas.clients.checkpoint import default_state_root
from relatlas.clients.models import check_encoders
from relatlas.server.checkpoint import resume_config
from relatlas.server.config import CHOICES, ConfigError, RunConfig
from relatlas.server.credentials import DEFAULT_HOSTS, CredentialsError, generate_credentials
from relatlas.server.deployment import DeploymentError, LocalDeployment
from relatlas.server.interruption import Interrupted
from relatlas.server.option_help import HELP
from relatlas.server.tracking import absolute_tracking_uri, check_outputs
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

DEPLOY_DIR = ".flwr/deployment"
ALIASES = {
    "num-clients": ["--clients"], "out-dir": ["--out"], "learning-rate": ["--lr"],
    "num-cpus": ["--client-cpus"], "num-gpus": ["--client-gpus"],
}  # fmt: skip


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
            help=_help(field),
        )


def _help(field: dataclasses.Field) -> str:
    """The option's line: what it does, its allowed values, its default."""
    allowed = CHOICES.get(field.name)
    one_of = f"; one of {', '.join(allowed)}" if allowed else ""
    return f"{HELP[field.name.replace('_', '-')]}{one_of} (default: {field.default!r})".replace("%", "%%")


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    """The options given; with ``--resume DIR``, on top of that run's checkpointed config."""
    given = {f.name.replace("_", "-"): getattr(args, f.name) for f in dataclasses.fields(RunConfig)}
    given = {key: value for key, value in given.items() if value is not None}
    if given.get("resume"):
        return resume_config(Path(given.pop("resume")), given)
    return RunConfig.from_mapping(given)


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


def _refuse_bad_input(config: RunConfig) -> None:
    """Check the outputs, load the data and make the split (and class schedule)
    before Ray starts; a bad place, dataset or size fails here in one line. Later
    loads hit the cache."""
    check_outputs(Path(config.out_dir), config.tracking_uri)
    dataset = load_dataset(config.dataset, config.data_root or None, config.seed)
    plan_for_task(dataset.y_train, config.to_mapping())
    try:
        check_encoders(config.encoder, dataset.input_shape, config.embedding_dim)
    except ValueError as err:
        raise ConfigError(f"encoder: {err}") from None
    if config.scenario == "continual":
        class_schedule(dataset.num_classes, config.experiences, config.stream, config.seed)


def _run(args: argparse.Namespace) -> int:
    from relatlas.server.simulation import run_simulation

    config = _config_from_args(args)
    _refuse_bad_input(config)
    try:
        run_simulation(config)
    except ConfigError:
        raise  # resources no Ray node has: one line, exit 2, like any bad config
    except Interrupted as err:
        out = Path(config.out_dir)
        Console().print(f"[red]relatlas: {err}; finished rounds in {out / 'results.json'}; go on with --resume {out}[/red]")
        return err.exit_code
    except Exception as err:  # noqa: BLE001 - reported in one line; results.json keeps finished rounds
        cause = err.__cause__ or err
        Console().print(f"[red]relatlas: run failed: {type(cause).__name__}: {cause}[/red]")
        return 1
    return _report(Path(config.out_dir), config.tracking_uri)


def _report(out_dir: Path, tracking_uri: str) -> int:
    """Print a finished run's table; exit status 1 unless it completed."""
    results = json.loads((out_dir / "results.json").read_text())
    console = Console()
    console.print(results_table(results))
    console.print(f"results: {out_dir / 'results.json'}")
    console.print(f"MLflow run id: {results['mlflow_run_id']} ({tracking_uri})")
    return 0 if results["status"] == "completed" else 1


def _deployment(args: argparse.Namespace) -> LocalDeployment:
    return LocalDeployment(Path(args.dir).resolve(), args.supernodes, args.port, args.supernode_port)


def _deploy_credentials(args: argparse.Namespace) -> int:
    print(f"credentials in {generate_credentials(Path(args.dir), args.supernodes, tuple(args.hosts), force=args.force)}")
    return 0


def _deploy_up(args: argparse.Namespace) -> int:
    deployment = _deployment(args)
    deployment.directory.mkdir(parents=True, exist_ok=True)
    pids = deployment.up()
    print(f"SuperLink on {deployment.address} (TLS, SuperNode authentication) and {args.supernodes} SuperNodes; pids {pids}")
    print(f"logs and state in {deployment.directory}; stop with `relatlas deploy down --dir {deployment.directory}`")
    return 0


def _deploy_run(args: argparse.Namespace) -> int:
    """Submit a run to the local federation; paths are resolved here, not where the SuperLink runs."""
    deployment = _deployment(args)
    config = _config_from_args(args)
    recorded = deployment.recorded()
    if config.num_clients != recorded["supernodes"]:
        raise ConfigError(f"num-clients is {config.num_clients}, but the federation has {recorded['supernodes']} SuperNodes")
    _refuse_bad_input(config)
    paths = {"out-dir": str(Path(config.out_dir).resolve()), "tracking-uri": absolute_tracking_uri(config.tracking_uri)}
    if config.resume:
        paths["resume"] = str(Path(config.resume).resolve())
    deployment.run(Path(__file__).resolve().parent.parent, config.to_mapping() | paths)
    if not (Path(paths["out-dir"]) / "results.json").exists():
        raise DeploymentError(f"the run wrote no results; see {deployment.directory}/superlink.log")
    return _report(Path(paths["out-dir"]), paths["tracking-uri"])


def _deploy_down(args: argparse.Namespace) -> int:
    print(f"stopped {_deployment(args).down() or 'nothing'}")
    return 0


def _resources(args: argparse.Namespace) -> SweepResources:
    return SweepResources(args.ray_address, args.cpus_per_trial, args.gpus_per_trial)


def _announce(suite: str, configs: Sequence[RunConfig], trials: int, out_dir: str) -> None:
    """Refuse bad data for every config before Ray starts, then say what will run."""
    for config in configs:
        _refuse_bad_input(config)
    print(f"relatlas bench {suite}: {trials} trials, results in {out_dir}/table.md", flush=True)


def _bench_atlas(args: argparse.Namespace) -> int:
    suite = AtlasSuiteConfig(
        datasets=tuple(args.datasets), splits=tuple(args.splits), aggregations=tuple(args.aggregations),
        anchor_counts=tuple(args.anchors), seeds=tuple(args.seeds), num_clients=args.clients, epochs=args.epochs,
        data_root=args.data_root, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    resources, trials = _resources(args), suite.trials()  # every config validated before the first trial
    _announce("atlas", [RunConfig.from_mapping(t.params) for t in trials], len(trials), suite.out_dir)
    run_atlas_suite(suite, resources)
    return 0


def _bench_continual(args: argparse.Namespace) -> int:
    suite = SuiteConfig(
        dataset=args.dataset, data_root=args.data_root, experiences=args.experiences, strategies=tuple(args.strategies),
        buffers=tuple(args.buffers), seeds=tuple(args.seeds), settings=tuple(args.settings),
        regularizers=tuple(args.regularizers), num_clients=args.clients, epochs=args.epochs, encoder=args.encoder,
        out_dir=args.out, tracking_uri=args.tracking_uri, casper_rho=args.casper_rho, casper_classes=args.casper_classes,
        casper_batch=args.casper_batch, casper_k=args.casper_k,
    )  # fmt: skip
    resources, trials = _resources(args), suite.trials()
    _announce("continual", [config for _, config in suite.run_configs()], len(trials), suite.out_dir)
    run_suite(suite, resources)
    return 0


def _bench_anchors(args: argparse.Namespace) -> int:
    suite = AnchorSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, seed_counts=tuple(args.seed_anchors),
        translation_counts=tuple(args.translation_seed_anchors), seeds=tuple(args.seeds), modes=tuple(args.modes),
        num_clients=args.clients, epochs=args.epochs, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    resources, trials = _resources(args), suite.trials()
    _announce("anchors", [config for _, _, config in suite.run_configs()], len(trials), suite.out_dir)
    run_anchor_suite(suite, resources)
    return 0


def _bench_stitching(args: argparse.Namespace) -> int:
    suite = StitchingSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, seeds=tuple(args.seeds), cnn_seeds=tuple(args.cnn_seeds),
        epochs=args.epochs, train_samples=args.train_samples, anchors=args.anchors,
        translation_anchors=tuple(args.translation_anchors), out_dir=args.out, tracking_uri=args.tracking_uri,
        experiment=args.experiment,
    )  # fmt: skip
    resources, trials = _resources(args), suite.trials(suite.load())  # bad data or sizes fail here, before Ray starts
    print(f"relatlas bench stitching: {len(trials)} encoders, results in {suite.out_dir}/table.md", flush=True)
    return 0 if "summary" in run_stitching_suite(suite, resources) else 1


def _bench_perf(args: argparse.Namespace) -> int:
    config = PerfConfig(
        dataset=args.dataset, data_root=args.data_root, sections=tuple(args.sections), scale_clients=tuple(args.scale_clients),
        payloads=tuple(args.payloads), out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    unknown = sorted(set(config.sections) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown perf sections {unknown}; choose from {', '.join(SECTIONS)}")
    for payload in config.payloads:
        config.run_config("check", payload=payload)  # refuses a bad payload before anything runs
    _refuse_bad_input(dataclasses.replace(config.run_config("check"), out_dir=config.out_dir))
    print(f"relatlas bench perf: {', '.join(config.sections)}; results in {config.out_dir}/perf.json", flush=True)
    run_perf(config)
    return 0


def _add_sweep_options(parser: argparse.ArgumentParser, defaults: Any) -> None:
    """Options every suite has: seeds, where and how wide trials run, where results go."""
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    parser.add_argument("--ray-address", default="", help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each parallel trial holds (default: 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each parallel trial holds (default: 0)")
    if hasattr(defaults, "num_clients"):  # suites of federations
        parser.add_argument("--clients", type=int, default=defaults.num_clients)
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--data-root", default=defaults.data_root)
    parser.add_argument("--out", default=defaults.out_dir)
    parser.add_argument("--tracking-uri", default=defaults.tracking_uri)


def _add_bench_parser(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="run an MLflow-tracked benchmark suite, its trials in parallel on Ray")
    suites = bench.add_subparsers(dest="suite", required=True)

    atlas = suites.add_parser("atlas", help="static federations: datasets x splits x aggregations x anchor counts x seeds")
    defaults = AtlasSuiteConfig()
    atlas.add_argument("--datasets", nargs="+", default=list(defaults.datasets))
    atlas.add_argument("--splits", nargs="+", default=list(defaults.splits))
    atlas.add_argument("--aggregations", nargs="+", default=list(defaults.aggregations))
    atlas.add_argument("--anchors", nargs="+", type=int, default=list(defaults.anchor_counts))
    _add_sweep_options(atlas, defaults)
    atlas.set_defaults(handler=_bench_atlas)

    continual = suites.add_parser("continual", help="Replay / ER-ACE with and without CaSpeR, centralised and federated")
    defaults = SuiteConfig()
    continual.add_argument("--dataset", default=defaults.dataset)
    continual.add_argument("--experiences", type=int, default=defaults.experiences)
    continual.add_argument("--strategies", nargs="+", default=list(defaults.strategies))
    continual.add_argument("--buffers", nargs="+", type=int, default=list(defaults.buffers))
    continual.add_argument("--settings", nargs="+", default=list(defaults.settings))
    continual.add_argument("--regularizers", nargs="+", default=list(defaults.regularizers))
    continual.add_argument("--encoder", default=defaults.encoder, help=f"as run --encoder (default: {defaults.encoder})")
    continual.add_argument("--casper-rho", type=float, default=defaults.casper_rho)
    continual.add_argument("--casper-classes", type=int, default=defaults.casper_classes, help="0: classes per experience")
    continual.add_argument("--casper-batch", type=int, default=defaults.casper_batch, help="0: the training batch size")
    continual.add_argument("--casper-k", type=int, default=defaults.casper_k)
    _add_sweep_options(continual, defaults)
    continual.set_defaults(handler=_bench_continual)

    anchors = suites.add_parser("anchors", help="disjoint anchor modes against shared anchors; translation quality")
    defaults = AnchorSuiteConfig()
    anchors.add_argument("--dataset", default=defaults.dataset)
    anchors.add_argument("--seed-anchors", nargs="+", type=int, default=list(defaults.seed_counts), help="K of the federations")
    anchors.add_argument(
        "--translation-seed-anchors", nargs="+", type=int, default=list(defaults.translation_counts), help="K of the translations"
    )
    anchors.add_argument("--modes", nargs="+", default=list(defaults.modes), help="federations to run (default: all)")
    _add_sweep_options(anchors, defaults)
    anchors.set_defaults(handler=_bench_anchors)

    stitching = suites.add_parser("stitching", help="zero-shot stitching: heads of one encoder's space on another encoder's")
    defaults = StitchingSuiteConfig()
    stitching.add_argument("--dataset", default=defaults.dataset)
    stitching.add_argument("--cnn-seeds", nargs="*", type=int, default=list(defaults.cnn_seeds), help="CNNs (--seeds: MLPs)")
    stitching.add_argument("--train-samples", type=int, default=defaults.train_samples, help="training subset (0: all)")
    stitching.add_argument("--anchors", type=int, default=defaults.anchors)
    stitching.add_argument("--translation-anchors", nargs="+", type=int, default=list(defaults.translation_anchors))
    stitching.add_argument("--experiment", default=defaults.experiment)
    _add_sweep_options(stitching, defaults)
    stitching.set_defaults(handler=_bench_stitching)

    perf = suites.add_parser("perf", help="kernel speed, Flower overhead, scale and payload sizes; perf.json and a table")
    defaults = PerfConfig()
    perf.add_argument("--dataset", default=defaults.dataset)
    perf.add_argument("--data-root", default=defaults.data_root)
    perf.add_argument("--sections", nargs="+", default=list(defaults.sections), help=f"of {', '.join(SECTIONS)}")
    perf.add_argument("--scale-clients", nargs="+", type=int, default=list(defaults.scale_clients))
    perf.add_argument("--payloads", nargs="+", default=list(defaults.payloads))
    perf.add_argument("--out", default=defaults.out_dir)
    perf.add_argument("--tracking-uri", default=defaults.tracking_uri)
    perf.set_defaults(handler=_bench_perf)


def _add_deploy_parser(commands: argparse._SubParsersAction) -> None:
    deploy = commands.add_parser("deploy", help="separate Flower processes on this machine: TLS, node authentication")
    actions = deploy.add_subparsers(dest="action", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--dir", default=DEPLOY_DIR, help=f"credentials, logs and process ids (default: {DEPLOY_DIR})")
    where.add_argument("--supernodes", type=int, default=3)
    where.add_argument("--port", type=int, default=LocalDeployment.port, help="the SuperLink's HTTPS port")
    where.add_argument("--supernode-port", type=int, default=LocalDeployment.supernode_port, help="SuperNode i's: this + i")

    credentials = actions.add_parser("credentials", parents=[where], help="a CA, the SuperLink's certificate, SuperNode keys")
    credentials.add_argument("--hosts", nargs="+", default=list(DEFAULT_HOSTS), help="names the certificate is valid for")
    credentials.add_argument("--force", action="store_true", help="replace existing credentials (SuperNodes must re-register)")
    credentials.set_defaults(handler=_deploy_credentials)
    actions.add_parser("up", parents=[where], help="start the SuperLink and the SuperNodes").set_defaults(handler=_deploy_up)
    run = actions.add_parser("run", parents=[where], help="submit a run with `flwr run` and wait for it")
    _add_config_options(run)
    run.set_defaults(handler=_deploy_run)
    actions.add_parser("down", parents=[where], help="stop what `up` started").set_defaults(handler=_deploy_down)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relatlas", description="Federated aggregation of relative latent spaces.")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run a federation on Flower's simulation engine")
    _add_config_options(run)
    run.set_defaults(handler=_run)
    _add_bench_parser(commands)
    _add_deploy_parser(commands)
    state = commands.add_parser("state", help="clients' saved state on this machine").add_subparsers(dest="action", required=True)
    clear = state.add_parser("clear", help="remove every run's client state (a finished run removes its own)")
    clear.add_argument("--dir", default=str(default_state_root()), help="the state-dir (default: %(default)s)")
    clear.set_defaults(handler=_state_clear)
    return parser


def _state_clear(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    runs = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    for run in runs:
        shutil.rmtree(root / run)
    print(f"removed the client state of {len(runs)} runs from {root}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logger = logging.getLogger("relatlas")
    logger.addHandler(RichHandler(show_path=False))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, DatasetError, SplitError, DeploymentError, CredentialsError) as err:
        print(f"relatlas: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
