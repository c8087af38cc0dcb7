"""``relatlas bench perf``: what relatlas costs on top of the learning itself.

Every figure is a ratio or a size measured in one run, written to ``perf.json``
and a markdown table:

- ``projection_vs_gemm``: throughput of the cosine relative projection over a
  plain matrix product of the same shape;
- ``l1_vs_cdist``, ``linf_vs_cdist``: the L1 / L-infinity projections, given a
  budget of 1,024 rows a block, against one ``torch.cdist`` call on the same inputs
  (results must be equal), with the peak memory each adds (they allocate only their
  output, so they take all rows at once: ``Similarity.output_only``);
- ``overhead_ratio``: wall time of a federation on Flower's simulation engine
  over the same training, projection, merge and scoring in one process (each
  side's fastest of ``overhead_turns`` runs, taken in turns);
- ``scale``: round seconds and the server's peak memory at 10 to 10,000 clients,
  each row in a fresh process, and ``scale.png`` (``benchmarks/perf_scale.py``);
- ``payload``: bytes per client and merged accuracy for each payload format,
  next to the bytes of the embedder's weights;
- ``startup``: seconds to start the CLI and to import relatlas, torch and a
  client actor's modules (``benchmarks/startup.py``);
- ``backbone``: a frozen pretrained backbone's first epoch over its later ones,
  whose features are cached (``benchmarks/perf_backbone.py``);
- ``messages``: the bytes a client is sent per round, public inputs raw, by their
  rows, by digest (``benchmarks/perf_messages.py``);
- ``gpu``: the CUDA paths as ratios (``benchmarks/perf_gpu.py``), skipped without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import mlflow
import torch

from relatlas.aggregation.aggregators import required_similarities
from relatlas.aggregation.projection import relative_projection, relative_subspaces
from relatlas.benchmarks.datasets import load_dataset, stratified_split
from relatlas.benchmarks.memory import peak_memory_added
from relatlas.benchmarks.perf_backbone import backbone_table, frozen_backbone_figures
from relatlas.benchmarks.perf_config import PerfConfig
from relatlas.benchmarks.perf_gpu import gpu_figures, gpu_table
from relatlas.benchmarks.perf_messages import message_figures, message_table
from relatlas.benchmarks.perf_scale import PLOT_NAME, scale_figures, scale_table
from relatlas.benchmarks.perf_split import overhead_split_table, round_split
from relatlas.benchmarks.perf_targets import target_rows, targets_missed
from relatlas.benchmarks.splits import plan_for
from relatlas.benchmarks.startup import startup_figures
from relatlas.clients.models import build_classifier
from relatlas.clients.training import predict, train_like_client
from relatlas.safe_files import private_dir, write_text_atomic
from relatlas.server.config import RunConfig
from relatlas.server.plots import plot_scale_rows
from relatlas.server.tracking import use_tracking


def best_seconds(fns: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Fastest of ``repeats`` calls of each of ``fns``, after one warm-up call each.

    The calls take turns (a, b, a, b, ...), so a burst of load from elsewhere on
    the machine slows both sides of a ratio rather than one of them."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, taken in zip(fns, times):
            started = time.perf_counter()
            fn()
            taken.append(time.perf_counter() - started)
    return [min(taken) for taken in times]


def kernel_figures(config: PerfConfig) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    n, d, m = config.gemm_shape
    x, anchors = torch.randn(n, d, generator=gen), torch.randn(m, d, generator=gen)
    gemm, projection = best_seconds([lambda: x @ anchors.T, lambda: relative_projection(x, anchors, "cosine")], config.repeats)
    figures: dict[str, Any] = {"projection_vs_gemm": gemm / projection, "gemm_shape": list(config.gemm_shape)}
    n, d, m = config.distance_shape
    x, anchors = torch.randn(n, d, generator=gen), torch.randn(m, d, generator=gen)
    block = 1024 * m  # a budget of 1,024 rows a block: l1 and linf still take all rows (output_only)
    for name, p in (("l1", 1.0), ("linf", float("inf"))):
        blocked, whole = _distance_kernels(x, anchors, name, p, block)
        if not torch.allclose(blocked(), whole(), rtol=1e-5, atol=1e-5):
            raise AssertionError(f"blocked {name} differs from torch.cdist")
        whole_seconds, blocked_seconds = best_seconds([whole, blocked], config.repeats)
        figures[f"{name}_vs_cdist"] = whole_seconds / blocked_seconds
        figures[f"{name}_peak_bytes"] = peak_memory_added(blocked)
        figures[f"{name}_cdist_peak_bytes"] = peak_memory_added(whole)
    figures["distance_shape"] = list(config.distance_shape)
    figures["output_bytes"] = n * m * 4
    return figures


def _distance_kernels(
    x: torch.Tensor, anchors: torch.Tensor, name: str, p: float, block: int
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """(relatlas's blocked projection, one torch.cdist call) for a distance."""
    return (lambda: relative_projection(x, anchors, name, block_elements=block)), (lambda: torch.cdist(x, anchors, p=p))


def in_process_seconds(config: RunConfig) -> float:
    """The work of one static round of ``config`` without Flower or Ray: each client
    trains (one after another), projects, then the server merges and scores."""
    from relatlas.server.evaluation import ProbeSplit, evaluate_round
    from relatlas.server.run_setup import PROBE_TEST_FRACTION

    load_dataset.cache_clear()  # loading the data is part of the work
    started = time.perf_counter()
    data = load_dataset(config.dataset, config.data_root or None, config.seed)
    plan = plan_for(data.y_train, config, config, config.seed)
    anchors, similarities = data.x_train[plan.anchor_indices], required_similarities(config.aggregation)
    spaces = []
    for partition, local in enumerate(plan.client_indices):
        model = train_like_client(config, config.seed, data, local, partition)
        spaces.append(relative_subspaces(predict(model.embedder, data.x_test), predict(model.embedder, anchors), similarities))
    fit_part, score_part = stratified_split(data.y_test, PROBE_TEST_FRACTION, config.seed)
    probes = ProbeSplit(fit_part, score_part, data.y_test, data.num_classes, config.probe_epochs, config.seed)
    evaluate_round(config.aggregation, spaces, list(range(len(spaces))), probes, plan)
    return time.perf_counter() - started


def _federation(config: RunConfig) -> tuple[dict[str, Any], float, int]:
    """Run ``config`` on Flower's simulation engine: (results, wall seconds, peak memory added)."""
    from relatlas.server.simulation import run_simulation

    active = mlflow.active_run()
    config = dataclasses.replace(config, parent_run=active.info.run_id if active else "")
    started = time.perf_counter()
    peak = peak_memory_added(lambda: run_simulation(config))
    results = json.loads((Path(config.out_dir) / "results.json").read_text())
    return results, time.perf_counter() - started, peak


def overhead_figures(config: PerfConfig) -> dict[str, Any]:
    """Clients hold both CPUs (num-cpus 2), so Flower, like the single process,
    trains one client at a time with the same threads. The two sides run in turns,
    ``overhead_turns`` times each, and the ratio is of each side's fastest run (the
    split is the fastest federation's): with one run of each, five runs of the section on
    the quiet 2-core machine gave ratios from 1.17 to 1.47 (2026-12-03). Each turn also
    measures Ray's start, a client actor's start and Ray's stop on their own
    (``benchmarks/perf_floor.py``): ``floor_ratio`` adds the fastest of them to the
    fastest run in one process."""
    from relatlas.benchmarks.perf_floor import fixed_seconds  # Ray and Flower: as _federation imports them

    run = config.run_config("overhead", num_cpus=2.0)
    federations, alone_runs, fixed_runs = [], [], []
    for _ in range(config.overhead_turns):
        results, seconds, _ = _federation(run)
        federations.append((seconds, results))
        alone_runs.append(in_process_seconds(run))
        fixed_runs.append(fixed_seconds(run))
    flower, results = min(federations, key=lambda federation: federation[0])
    alone, fixed = min(alone_runs), min(fixed_runs, key=lambda parts: parts["total"])
    return {
        "overhead_ratio": flower / alone, "flower_seconds": flower, "in_process_seconds": alone,
        "flower_runs_seconds": [seconds for seconds, _ in federations], "in_process_runs_seconds": alone_runs,
        "split": round_split(results, flower), "fixed_seconds": fixed, "floor_ratio": (alone + fixed["total"]) / alone,
    }  # fmt: skip


def payload_figures(config: PerfConfig) -> list[dict[str, Any]]:
    rows = []
    for payload in config.payloads:
        run = config.run_config(f"payload-{payload.replace(':', '-')}", payload=payload)
        results, _, _ = _federation(run)
        rows.append({"payload": payload, "bytes_per_client": results["payload_bytes_per_client"],
                     "merged_accuracy": results["merged_accuracy"]})  # fmt: skip
    base = next((r["merged_accuracy"] for r in rows if r["payload"] == "fp32"), None)
    for row in rows:
        row["accuracy_change"] = None if base is None else row["merged_accuracy"] - base
    data = load_dataset(config.dataset, config.data_root or None, 0)
    embedder = build_classifier(data.input_shape, data.num_classes, encoder="mlp").embedder
    weights = sum(p.numel() * p.element_size() for p in embedder.parameters())
    rows.append(
        {"payload": "embedder weights (fp32)", "bytes_per_client": weights, "merged_accuracy": None, "accuracy_change": None}
    )
    return rows


def perf_table(perf: dict[str, Any]) -> str:
    """One Markdown table per measured section; the ratio table only when kernels or overhead ran."""
    ratios = target_rows(perf)
    lines = ["| figure | value | target |", "|---|---|---|", *ratios] if ratios else []
    if "overhead" in perf:
        lines += overhead_split_table(perf["overhead"])
    if "scale" in perf:
        lines += scale_table(perf["scale"])
    if "payload" in perf:
        lines += ["", "| payload | bytes per client | merged accuracy | change |", "|---|---|---|---|"]
        for r in perf["payload"]:
            accuracy = "-" if r["merged_accuracy"] is None else f"{r['merged_accuracy']:.3f}"
            change = "-" if r["accuracy_change"] is None else f"{r['accuracy_change']:+.3f}"
            lines.append(f"| {r['payload']} | {r['bytes_per_client']:,.0f} | {accuracy} | {change} |")
    if "startup" in perf:
        lines += ["", "| startup (median of fresh processes) | seconds |", "|---|---|"]
        startup = perf["startup"]
        for key in ("cli_help_seconds", "bench_help_seconds", "import_relatlas_seconds", "import_torch_seconds",
                    "client_actor_import_seconds"):  # fmt: skip
            lines.append(f"| `{key.removesuffix('_seconds')}` | {startup[key]:.3f} |")
        lines.append(f"| `import_ratio` (relatlas / torch; target <= 1.3) | {startup['import_ratio']:.2f} |")
    if "backbone" in perf:
        lines += backbone_table(perf["backbone"])
    if "messages" in perf:
        lines += message_table(perf["messages"])
    lines += gpu_table(perf["gpu"]) if "gpu" in perf else []
    return "\n".join(lines).strip("\n")


def run_perf(config: PerfConfig) -> dict[str, Any]:
    """Measure the chosen sections one after another (timings need the machine to
    themselves); ``perf.json`` and ``table.md`` are rewritten after each."""
    out_dir = private_dir(Path(config.out_dir))
    sections = {
        "kernels": kernel_figures, "overhead": overhead_figures, "scale": scale_figures, "payload": payload_figures,
        "startup": lambda config: startup_figures(config.startup_samples),
        "backbone": lambda config: frozen_backbone_figures(
            config.dataset, config.data_root, rows=config.backbone_rows, side=config.backbone_side,
            epochs=config.backbone_epochs, folder=out_dir / "backbone",
        ),
        "messages": lambda config: message_figures(config.run_config("messages")),
        "gpu": lambda config: gpu_figures(config.gemm_shape, config.distance_shape, config.repeats),
    }  # fmt: skip
    perf: dict[str, Any] = {"targets_missed": [], "load_average": {}}
    use_tracking(config.tracking_uri, config.experiment)
    with mlflow.start_run(run_name="bench-perf") as parent:
        mlflow.log_params({k: str(v) for k, v in dataclasses.asdict(config).items()})
        for name in config.sections:
            print(f"perf: {name}", flush=True)
            perf[name] = sections[name](config)
            perf["load_average"][name] = list(os.getloadavg())  # 1, 5, 15 minutes: how busy the machine was
            perf["targets_missed"] = targets_missed(perf)
            write_text_atomic(out_dir / "perf.json", json.dumps(perf, indent=2))
            write_text_atomic(out_dir / "table.md", perf_table(perf) + "\n")
            if name == "scale":
                mlflow.log_artifact(str(plot_scale_rows(perf["scale"], out_dir / PLOT_NAME)))
        timed = ("kernels", "overhead", "startup", "backbone")
        scalars = {k: v for section in timed for k, v in perf.get(section, {}).items() if isinstance(v, float)}
        mlflow.log_metrics(scalars)
        for name in ("perf.json", "table.md"):
            mlflow.log_artifact(str(out_dir / name))
        perf["mlflow_run_id"] = parent.info.run_id
    print(perf_table(perf))
    if perf["targets_missed"]:
        print(f"perf: targets missed: {', '.join(perf['targets_missed'])}")
    return perf
