"""``relatlas bench feedback``: atlas objectives against the run without feedback
(``benchmarks/feedback_suite.py``), its trials on Ray, each federation in its trial's process."""

from __future__ import annotations

import argparse

from relatlas.benchmarks.feedback_suite import ATLASES, FeedbackSuiteConfig, run_feedback_suite
from relatlas.benchmarks.sweep import SweepResources
from relatlas.server.preflight import refuse_bad_input


def _bench_feedback(args: argparse.Namespace) -> int:
    suite = FeedbackSuiteConfig(
        dataset=args.dataset, data_root=args.data_root, objectives=tuple(args.objectives), weights=tuple(args.weights),
        atlases=tuple(args.atlases), seeds=tuple(args.seeds), public_pool=args.public_pool, rounds=args.rounds,
        epochs=args.epochs,
        eval_samples=args.eval_samples, probe_epochs=args.probe_epochs, out_dir=args.out, tracking_uri=args.tracking_uri,
    )  # fmt: skip
    runs = suite.run_configs()  # every config validated before anything starts
    for _, config in runs:
        refuse_bad_input(config)
    print(f"relatlas bench feedback: {len(runs)} trials, results in {suite.out_dir}/table.md", flush=True)
    resources = SweepResources(args.ray_address, args.cpus_per_trial, args.gpus_per_trial)
    run_feedback_suite(suite, resources, in_process=args.in_process)
    return 0


def add_feedback_options(feedback: argparse.ArgumentParser) -> None:
    defaults = FeedbackSuiteConfig()
    feedback.add_argument("--dataset", default=defaults.dataset)
    feedback.add_argument("--data-root", default=defaults.data_root)
    feedback.add_argument("--objectives", nargs="+", default=list(defaults.objectives), help="atlas objectives to try")
    feedback.add_argument("--weights", nargs="+", type=float, default=list(defaults.weights), help="atlas weights to try")
    feedback.add_argument("--atlases", nargs="+", default=list(defaults.atlases), help=f"atlases to try, of {', '.join(ATLASES)}")
    feedback.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    feedback.add_argument("--public-pool", type=int, default=defaults.public_pool)
    feedback.add_argument("--rounds", type=int, default=defaults.rounds)
    feedback.add_argument("--epochs", type=int, default=defaults.epochs)
    feedback.add_argument("--eval-samples", type=int, default=defaults.eval_samples, help="0: the whole test set")
    feedback.add_argument("--probe-epochs", type=int, default=defaults.probe_epochs)
    feedback.add_argument("--ray-address", default="", help="join this Ray cluster (default: RAY_ADDRESS, else a local instance)")
    feedback.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each parallel trial holds (default: 1)")
    feedback.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each parallel trial holds (default: 0)")
    feedback.add_argument("--in-process", action="store_true", help="run the trials one after another here, without Ray")
    feedback.add_argument("--out", default=defaults.out_dir)
    feedback.add_argument("--tracking-uri", default=defaults.tracking_uri)
    feedback.set_defaults(handler=_bench_feedback)
