"""``relatlas bench perf``: kernels, Flower's overhead, scale, payloads, start-up and
frozen backbones (``benchmarks/perf.py``), written to ``perf.json`` and a table.
Its options read light defaults (``benchmarks/perf_config.py``); torch is imported
only when the suite runs."""

from __future__ import annotations

import argparse
import dataclasses

from relatlas.benchmarks.perf_config import SECTIONS, PerfConfig


def _bench_perf(args: argparse.Namespace) -> int:
    from relatlas.benchmarks.perf import run_perf
    from relatlas.benchmarks.perf_scale import scale_run_config
    from relatlas.server.preflight import refuse_bad_input

    config = PerfConfig(
        dataset=args.dataset, data_root=args.data_root, sections=tuple(args.sections), scale_clients=tuple(args.scale_clients),
        scale_sampled_per_round=args.scale_clients_per_round, payloads=tuple(args.payloads),
        startup_samples=args.startup_samples, overhead_turns=args.overhead_turns, out_dir=args.out,
        tracking_uri=args.tracking_uri,
    )  # fmt: skip
    for payload in config.payloads:
        config.run_config("check", payload=payload)  # refuses a bad payload before anything runs
    for clients in config.scale_clients:
        scale_run_config(config, clients)  # and a scale row no federation can run
    refuse_bad_input(dataclasses.replace(config.run_config("check"), out_dir=config.out_dir))
    print(f"relatlas bench perf: {', '.join(config.sections)}; results in {config.out_dir}/perf.json", flush=True)
    run_perf(config)
    return 0


def add_perf_options(perf: argparse.ArgumentParser) -> None:
    defaults = PerfConfig()
    perf.add_argument("--dataset", default=defaults.dataset)
    perf.add_argument("--data-root", default=defaults.data_root)
    perf.add_argument("--sections", nargs="+", default=list(defaults.sections), help=f"of {', '.join(SECTIONS)}")
    perf.add_argument("--scale-clients", nargs="+", type=int, default=list(defaults.scale_clients))
    perf.add_argument(
        "--scale-clients-per-round", type=int, default=defaults.scale_sampled_per_round,
        help=f"scale rows of more than {defaults.scale_all_train_up_to:,} clients train a seeded sample of this many a round",
    )  # fmt: skip
    perf.add_argument("--payloads", nargs="+", default=list(defaults.payloads))
    perf.add_argument("--startup-samples", type=int, default=defaults.startup_samples, help="fresh processes per startup figure")
    perf.add_argument(
        "--overhead-turns", type=int, default=defaults.overhead_turns,
        help="runs of each side of overhead_ratio, in turns; each side's fastest counts",
    )  # fmt: skip
    perf.add_argument("--out", default=defaults.out_dir)
    perf.add_argument("--tracking-uri", default=defaults.tracking_uri)
    perf.set_defaults(handler=_bench_perf)
