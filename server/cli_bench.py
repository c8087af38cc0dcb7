"""``relatlas bench``: the MLflow-tracked benchmark suites, their trials in parallel on Ray.

Each suite's options and handler import its modules only when that suite is named
(``server/cli_lazy.py``): the continual suite's Avalanche, for one, stays out of the others.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relatlas.server.cli_lazy import AddOptions, LazyOptionsParser
from relatlas.server.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from relatlas.benchmarks.sweep import SweepResources


def _resources(args: argparse.Namespace) -> SweepResources:
    from relatlas.benchmarks.sweep import SweepResources

    return SweepResources(args.ray_address, args.cpus_per_trial, args.gpus_per_trial)


def _announce(suite: str, configs: Sequence[RunConfig], trials: int, out_dir: str) -> None:
    """Refuse bad data for every config before Ray starts, then say what will run."""
    from relatlas.server.preflight import refuse_bad_input

    for config in configs:
        refuse_bad_input(config)
    print(f"relatlas bench {suite}: {trials} trials, results in {out_dir}/table.md", flush=True)


def _bench_atlas(args: argparse.Namespace) -> int:
    from relatlas.benchmarks.atlas_suite import AtlasSuiteConfig, run_atlas_suite

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
    from relatlas.benchmarks.continual_suite import SuiteConfig, run_suite

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
    from relatlas.benchmarks.anchors_suite import AnchorSuiteConfig, run_anchor_suite

    suite = AnchorSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, seed_counts=tuple(args.seed_anchors),
        translation_counts=tuple(args.translation_seed_anchors), seeds=tuple(args.seeds), modes=tuple(args.modes),
        ridges=tuple(args.ridges), num_clients=args.clients, epochs=args.epochs, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    resources, trials = _resources(args), suite.trials()
    _announce("anchors", [config for _, _, config in suite.run_configs()], len(trials), suite.out_dir)
    run_anchor_suite(suite, resources)
    return 0


def _bench_stitching(args: argparse.Namespace) -> int:
    from relatlas.benchmarks.stitching_suite import StitchingSuiteConfig, run_stitching_suite

    suite = StitchingSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, seeds=tuple(args.seeds), cnn_seeds=tuple(args.cnn_seeds),
        epochs=args.epochs, training=args.training, train_samples=args.train_samples, anchors=args.anchors,
        translation_anchors=tuple(args.translation_anchors), out_dir=args.out, tracking_uri=args.tracking_uri,
        experiment=args.experiment,
    )  # fmt: skip
    data = suite.load()
    resources, trials = _resources(args), suite.trials(data)  # bad data or sizes fail here, before Ray starts
    for line in suite.skipped(data):
        print(f"relatlas bench stitching: skipped {line}", flush=True)
    print(f"relatlas bench stitching: {len(trials)} encoders, results in {suite.out_dir}/table.md", flush=True)
    return 0 if "summary" in run_stitching_suite(suite, resources) else 1


def _bench_attacks(args: argparse.Namespace) -> int:
    from relatlas.benchmarks.attacks_suite import AttackSuiteConfig, run_attack_suite
    from relatlas.server.preflight import refuse_bad_input

    try:
        suite = AttackSuiteConfig(
            dataset=args.dataset, data_root=args.data_root, num_clients=args.clients, fractions=tuple(args.fractions),
            attacks=tuple(args.attacks), epochs=args.epochs, rounds=args.rounds, seed=args.seed, out_dir=args.out,
        )  # fmt: skip
    except ValueError as err:
        raise ConfigError(str(err)) from None
    refuse_bad_input(suite.run_config("check"))
    print(f"relatlas bench attacks: {', '.join(suite.attacks)}; results in {suite.out_dir}/table.md", flush=True)
    run_attack_suite(suite, log=lambda line: print(line, flush=True))
    print((Path(suite.out_dir) / "table.md").read_text(), flush=True)
    return 0


def _bench_teach(args: argparse.Namespace) -> int:
    from relatlas.benchmarks.teach_suite import TeachSuiteConfig, run_teach_suite

    suite = TeachSuiteConfig(
        datasets=tuple(args.datasets), rows=tuple(args.algorithms), seeds=tuple(args.seeds), setting=args.setting,
        rounds=args.rounds, epochs=args.epochs, local_test_fraction=args.local_test_fraction, public_pool=args.public_pool,
        atlas_weight=args.atlas_weight, atlas_objective=args.atlas_objective, atlas_leave_one_out=args.atlas_leave_one_out,
        eval_samples=args.eval_samples,
        probe_epochs=args.probe_epochs, data_root=args.data_root, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    resources, (runs, skipped) = _resources(args), suite.plan()  # every config validated before the first trial
    for line in skipped:
        print(f"relatlas bench teach: skipped {line}", flush=True)
    _announce("teach", [config for _, config in runs], len(runs), suite.out_dir)
    run_teach_suite(suite, resources, in_process=args.in_process)
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


def _atlas_options(atlas: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.atlas_suite import AtlasSuiteConfig

    defaults = AtlasSuiteConfig()
    atlas.add_argument("--datasets", nargs="+", default=list(defaults.datasets))
    atlas.add_argument("--splits", nargs="+", default=list(defaults.splits))
    atlas.add_argument("--aggregations", nargs="+", default=list(defaults.aggregations))
    atlas.add_argument("--anchors", nargs="+", type=int, default=list(defaults.anchor_counts))
    _add_sweep_options(atlas, defaults)
    atlas.set_defaults(handler=_bench_atlas)


def _continual_options(continual: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.continual_suite import SuiteConfig

    defaults = SuiteConfig()
    continual.add_argument("--dataset", default=defaults.dataset)
    continual.add_argument("--experiences", type=int, default=defaults.experiences)
    continual.add_argument("--strategies", nargs="+", default=list(defaults.strategies))
    continual.add_argument("--buffers", nargs="+", type=int, default=list(defaults.buffers))
    continual.add_argument("--settings", nargs="+", default=list(defaults.settings))
    continual.add_argument("--regularizers", nargs="+", default=list(defaults.regularizers))
    continual.add_argument("--encoder", default=defaults.encoder, help=f"as run --encoder (default: {defaults.encoder})")
    continual.add_argument("--casper-rho", type=float, default=defaults.casper_rho)
    continual.add_argument("--casper-classes", type=int, default=defaults.casper_classes, help="0: the stream's classes per task")
    continual.add_argument("--casper-batch", type=int, default=defaults.casper_batch, help="0: the training batch size")
    continual.add_argument("--casper-k", type=int, default=defaults.casper_k)
    _add_sweep_options(continual, defaults)
    continual.set_defaults(handler=_bench_continual)


def _anchors_options(anchors: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.anchors_suite import AnchorSuiteConfig

    defaults = AnchorSuiteConfig()
    anchors.add_argument("--dataset", default=defaults.dataset)
    anchors.add_argument("--seed-anchors", nargs="+", type=int, default=list(defaults.seed_counts), help="K of the federations")
    anchors.add_argument(
        "--translation-seed-anchors", nargs="+", type=int, default=list(defaults.translation_counts), help="K of the translations"
    )
    anchors.add_argument(
        "--modes", nargs="*", default=list(defaults.modes), help="federations to run (default: all; none: only the translations)"
    )
    anchors.add_argument(
        "--ridges",
        nargs="*",
        type=float,
        default=list(defaults.ridges),
        help="fixed inversion ridges measured beside the cross-validated one",
    )
    _add_sweep_options(anchors, defaults)
    anchors.set_defaults(handler=_bench_anchors)


def _stitching_options(stitching: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.stitching_suite import StitchingSuiteConfig

    defaults = StitchingSuiteConfig()
    stitching.add_argument("--dataset", default=defaults.dataset)
    stitching.add_argument("--cnn-seeds", nargs="*", type=int, default=list(defaults.cnn_seeds), help="CNNs (--seeds: MLPs)")
    stitching.add_argument("--train-samples", type=int, default=defaults.train_samples, help="training subset (0: all)")
    stitching.add_argument("--anchors", type=int, default=defaults.anchors)
    stitching.add_argument(
        "--training", default=defaults.training, help="absolute: heads fitted afterwards; relative: the paper's relative training"
    )
    stitching.add_argument("--translation-anchors", nargs="+", type=int, default=list(defaults.translation_anchors))
    stitching.add_argument("--experiment", default=defaults.experiment)
    _add_sweep_options(stitching, defaults)
    stitching.set_defaults(handler=_bench_stitching)


def _perf_options(perf: argparse.ArgumentParser) -> None:
    from relatlas.server.cli_bench_perf import add_perf_options

    add_perf_options(perf)


def _attacks_options(attacks: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.attacks import ATTACKS
    from relatlas.benchmarks.attacks_suite import AttackSuiteConfig

    defaults = AttackSuiteConfig()
    attacks.add_argument("--dataset", default=defaults.dataset)
    attacks.add_argument("--data-root", default=defaults.data_root)
    attacks.add_argument("--clients", type=int, default=defaults.num_clients)
    attacks.add_argument("--fractions", nargs="+", type=float, default=list(defaults.fractions), help="of hostile clients")
    attacks.add_argument("--attacks", nargs="+", default=list(defaults.attacks), help=f"of {', '.join(ATTACKS)}")
    attacks.add_argument("--epochs", type=int, default=defaults.epochs)
    attacks.add_argument("--rounds", type=int, default=defaults.rounds)
    attacks.add_argument("--seed", type=int, default=defaults.seed)
    attacks.add_argument("--out", default=defaults.out_dir)
    attacks.set_defaults(handler=_bench_attacks)


def _teach_options(teach: argparse.ArgumentParser) -> None:
    from relatlas.benchmarks.teach_suite import ATLAS_ROW, ROWS, SETTINGS, TeachSuiteConfig

    defaults = TeachSuiteConfig()
    teach.add_argument("--datasets", nargs="+", default=list(defaults.datasets))
    teach.add_argument("--algorithms", nargs="+", default=list(defaults.rows), help=f"rows, of {', '.join(ROWS)}")
    teach.add_argument("--setting", default=defaults.setting, help=f"of {', '.join(SETTINGS)} (htfl: benchmarks/htfl.py)")
    teach.add_argument("--rounds", type=int, default=defaults.rounds)
    teach.add_argument("--local-test-fraction", type=float, default=defaults.local_test_fraction)
    teach.add_argument("--public-pool", type=int, default=defaults.public_pool)
    teach.add_argument("--atlas-weight", type=float, default=defaults.atlas_weight, help=f"of row {ATLAS_ROW}")
    teach.add_argument("--atlas-objective", default=defaults.atlas_objective, help=f"of row {ATLAS_ROW}")
    teach.add_argument("--atlas-leave-one-out", action="store_true", help=f"row {ATLAS_ROW} sends each client the others' merge")
    teach.add_argument("--eval-samples", type=int, default=None, help="default: the setting's (default: the whole test set)")
    teach.add_argument("--probe-epochs", type=int, default=defaults.probe_epochs)
    teach.add_argument("--in-process", action="store_true", help="run the trials one after another, without Ray")
    _add_sweep_options(teach, defaults)
    teach.set_defaults(handler=_bench_teach)


def _feedback_options(feedback: argparse.ArgumentParser) -> None:
    from relatlas.server.cli_bench_feedback import add_feedback_options

    add_feedback_options(feedback)


# suite -> (its one-line help, what adds its options and handler when it is named)
SUITES: dict[str, tuple[str, AddOptions]] = {
    "atlas": ("static federations: datasets x splits x aggregations x anchor counts x seeds", _atlas_options),
    "continual": ("Replay / ER-ACE with and without CaSpeR, centralised and federated", _continual_options),
    "anchors": ("disjoint anchor modes against shared anchors; translation quality", _anchors_options),
    "stitching": ("zero-shot stitching: heads of one encoder's space on another encoder's", _stitching_options),
    "perf": ("kernels, Flower overhead, scale, payloads, start-up, frozen backbones; perf.json and a table", _perf_options),
    "attacks": ("robust merges against poisoning attacks at fractions of hostile clients", _attacks_options),
    "feedback": ("the atlas sent back: each objective and weight against no feedback", _feedback_options),
    "teach": ("local, FedAvg, FedProto, relatlas with and without the atlas, centralised", _teach_options),
}


def add_bench_command(bench: argparse.ArgumentParser) -> None:
    suites = bench.add_subparsers(dest="suite", required=True, parser_class=LazyOptionsParser)
    for name, (summary, add_options) in SUITES.items():
        suites.add_parser(name, help=summary, add_options=add_options)
