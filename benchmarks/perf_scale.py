"""``relatlas bench perf --sections scale``: how a round's time and the server's memory grow with the clients.

Each row is one round of a federation (Fashion-MNIST by default, the ``iid`` split:
``same-classes`` cannot give 10,000 clients every class from 60,000 rows) on
Flower's simulation engine, run in a fresh process of its own so that no row
inherits another's caches or peak. Rows of up to ``scale_all_train_up_to``
clients train every client; larger ones train a seeded sample of
``scale_sampled_per_round`` (``fraction-train``, ``min-train-nodes``), as a
10,000-client run on one machine must.

- ``server_peak_bytes``: how far the peak resident memory (VmHWM) of the process
  that runs the federation rose over what it held once its libraries were
  imported: the ServerApp, Flower's in-process link state and the Ray driver, the
  dataset the server reads included; the clients' Ray actors and Ray's own
  daemons are other processes and not counted; ``server_peak_rss_bytes``: that
  process's whole peak, the libraries it imported included;
- ``bytes_per_client_round``: ``bytes_sent_per_client`` (a client's train message)
  plus ``payload_bytes_per_client`` (its reply's relative payload), in the round;
- ``server_peak_growth``, ``clients_growth``: a row's peak and clients over the
  previous row's; ``sublinear``: the peak grew by less than the clients.

``python -m relatlas.benchmarks.perf_scale runs/bench-perf/perf.json`` redraws
``scale.png`` next to that ``perf.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow

from relatlas.benchmarks.memory import peak_memory_added, rss_kib
from relatlas.benchmarks.perf_config import PerfConfig
from relatlas.safe_files import write_text_atomic
from relatlas.server.config import RunConfig
from relatlas.server.plots import plot_scale_rows

SCALE_SPLIT = "iid"
PLOT_NAME = "scale.png"


def scale_run_config(config: PerfConfig, clients: int) -> RunConfig:
    """The row's federation: one round, 1 epoch, every client or a seeded sample of them."""
    per_round = clients if clients <= config.scale_all_train_up_to else min(config.scale_sampled_per_round, clients)
    sampling = {} if per_round == clients else {"fraction_train": per_round / clients, "min_train_nodes": per_round}
    active = mlflow.active_run()
    return config.run_config(
        f"scale-{clients}", split=SCALE_SPLIT, num_clients=clients, min_clients=per_round, epochs=1,
        eval_samples=config.scale_eval_samples, client_scores=False, parent_run=active.info.run_id if active else "",
        **sampling,
    )  # fmt: skip


def scale_figures(config: PerfConfig) -> list[dict[str, Any]]:
    """One row per ``config.scale_clients``, each measured in a fresh process (``measure_row``)."""
    rows: list[dict[str, Any]] = []
    for clients in config.scale_clients:
        run = scale_run_config(config, clients)
        with tempfile.TemporaryDirectory(prefix="relatlas-scale-") as folder:
            config_path, row_path = Path(folder) / "config.json", Path(folder) / "row.json"
            config_path.write_text(json.dumps(run.to_mapping()))
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", __name__, "--row", str(config_path), str(row_path)], check=True)
            row = json.loads(row_path.read_text()) | {"process_seconds": time.perf_counter() - started}
        rows.append(row | growth(rows[-1], row) if rows else row)
        print(f"perf: scale row {json.dumps(rows[-1])}", flush=True)  # a long section's rows, before perf.json
    return rows


def measure_row(run: RunConfig) -> dict[str, Any]:
    """Run ``run`` in this (fresh) process and read its row from its results."""
    from relatlas.server.simulation import run_simulation

    started = time.perf_counter()
    peak = peak_memory_added(lambda: run_simulation(run))
    wall = time.perf_counter() - started
    whole = rss_kib("VmHWM") * 1024
    results = json.loads((Path(run.out_dir) / "results.json").read_text())
    first, accuracy = results["rounds"][0], results["merged_accuracy"]
    sent, payload = first["bytes_sent_per_client"], first["payload_bytes_per_client"]
    return {
        "clients": run.num_clients, "clients_per_round": run.clients_per_round(), "round_seconds": first["round_seconds"],
        "wall_seconds": wall, "server_peak_bytes": peak, "server_peak_rss_bytes": whole, "bytes_sent_per_client": sent,
        "payload_bytes_per_client": payload, "bytes_per_client_round": sent + payload, "merged_accuracy": accuracy,
    }  # fmt: skip


def growth(previous: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """How ``row``'s server peak grew over ``previous``'s, against how its clients did."""
    peak = row["server_peak_bytes"] / max(previous["server_peak_bytes"], 1)
    clients = row["clients"] / previous["clients"]
    return {"server_peak_growth": peak, "clients_growth": clients, "sublinear": peak < clients}


SERVER_PEAK_TARGET = 500e6  # bytes at 1,000 clients (issue 23)


def scale_targets_missed(rows: Sequence[dict[str, Any]]) -> list[str]:
    """``server_peak_at_1000`` if the 1,000-client row peaks at the target or above, and
    ``server_peak_sublinear`` if a row's peak grew by as much as its clients or more."""
    missed = []
    if any(r["clients"] == 1000 and r["server_peak_bytes"] >= SERVER_PEAK_TARGET for r in rows):
        missed.append("server_peak_at_1000")
    if any(r.get("sublinear") is False for r in rows):
        missed.append("server_peak_sublinear")
    return missed


def scale_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The section's rows of ``relatlas bench perf``'s Markdown table, the 1,000-client target marked."""
    lines = [
        "", "| clients | per round | round s | server peak MB | bytes per client round | merged accuracy | peak growth |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        peak = f"{r['server_peak_bytes'] / 1e6:.0f}"
        if r["clients"] == 1000:
            peak += " (target < 500: " + ("met)" if r["server_peak_bytes"] < SERVER_PEAK_TARGET else "missed)")
        grew = "-" if "server_peak_growth" not in r else f"x{r['server_peak_growth']:.2f} for x{r['clients_growth']:g} clients"
        lines.append(
            f"| {r['clients']} | {r['clients_per_round']} | {r['round_seconds']:.1f} | {peak} | "
            f"{r['bytes_per_client_round']:,.0f} | {r['merged_accuracy']:.3f} | {grew} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relatlas.benchmarks.perf_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("perf_json", nargs="?", help="a perf.json with a scale section: scale.png is drawn next to it")
    parser.add_argument("--row", nargs=2, metavar=("CONFIG", "OUT"), help=argparse.SUPPRESS)  # one row, in this fresh process
    args = parser.parse_args(argv)
    if args.row:
        config_path, out = args.row
        row = measure_row(RunConfig.from_mapping(json.loads(Path(config_path).read_text())))
        write_text_atomic(Path(out), json.dumps(row))
        return 0
    if not args.perf_json:
        parser.error("give a perf.json")
    perf_path = Path(args.perf_json)
    rows = json.loads(perf_path.read_text()).get("scale")
    if not rows:
        parser.error(f"{perf_path} has no scale section: run relatlas bench perf --sections scale")
    print(plot_scale_rows(rows, perf_path.parent / PLOT_NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
