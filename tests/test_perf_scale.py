"""The scale section's rows, table and plot, and the sampled 10,000-client row's config;
the figures themselves belong to `relatlas bench perf --sections scale`."""

from __future__ import annotations

import json

import numpy as np

from relatlas.benchmarks.perf import perf_table
from relatlas.benchmarks.perf_config import PerfConfig
from relatlas.benchmarks.perf_scale import PLOT_NAME, growth, main, scale_run_config
from relatlas.benchmarks.splits import plan_for


def _row(clients, per_round, seconds, peak):
    return {
        "clients": clients, "clients_per_round": per_round, "round_seconds": seconds, "server_peak_bytes": peak,
        "bytes_sent_per_client": 1000.0, "payload_bytes_per_client": 256_000.0, "bytes_per_client_round": 257_000.0,
        "merged_accuracy": 0.7,
    }  # fmt: skip


def test_the_10000_client_row_trains_a_seeded_sample_and_its_plan_deals_every_client():
    config = PerfConfig()
    assert 10_000 in config.scale_clients
    run = scale_run_config(config, 10_000)
    assert (run.num_clients, run.clients_per_round(), run.min_clients) == (10_000, 100, 100)
    assert scale_run_config(config, 1000).clients_per_round() == 1000  # up to 1,000 every client trains
    labels = np.random.default_rng(0).integers(0, 10, 60_000)  # Fashion-MNIST's training rows
    plan = plan_for(labels, run, run, run.seed)
    assert len(plan.client_indices) == 10_000 and min(map(len, plan.client_indices)) == 5
    assert len(plan.anchor_indices) == run.anchors


def test_growth_says_whether_the_peak_grew_slower_than_the_clients():
    grew = growth(_row(1000, 1000, 80.0, 400e6), _row(10_000, 100, 30.0, 600e6))
    assert grew == {"server_peak_growth": 1.5, "clients_growth": 10.0, "sublinear": True}
    assert not growth(_row(100, 100, 20.0, 40e6), _row(1000, 1000, 80.0, 600e6))["sublinear"]


def test_the_table_marks_the_target_and_the_plot_is_redrawn_from_perf_json(tmp_path):
    rows = [_row(10, 10, 10.0, 60e6), _row(1000, 1000, 80.0, 600e6), _row(10_000, 100, 30.0, 700e6)]
    rows[2] |= growth(rows[1], rows[2])
    table = perf_table({"scale": rows})
    assert "| 1000 | 1000 | 80.0 | 600 (target < 500: missed) |" in table
    assert "| 10000 | 100 | 30.0 | 700 | 257,000 | 0.700 | x1.17 for x10 clients |" in table
    perf = tmp_path / "perf.json"
    perf.write_text(json.dumps({"scale": rows}))
    assert main([str(perf)]) == 0
    assert (tmp_path / PLOT_NAME).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
