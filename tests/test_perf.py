"""The perf harness on tiny shapes: it checks the blocked kernels against torch.cdist
and reports ratios; the figures themselves belong to `relatlas bench perf`."""

from __future__ import annotations

import subprocess
import sys

import pytest
import ray

from relatlas.benchmarks.memory import peak_memory_added
from relatlas.benchmarks.perf import kernel_figures, perf_table
from relatlas.benchmarks.perf_config import PerfConfig
from relatlas.benchmarks.perf_split import PARTS, round_split
from relatlas.benchmarks.perf_targets import targets_missed
from relatlas.benchmarks.startup import startup_figures
from relatlas.server.config import ConfigError, RunConfig


def test_kernel_figures_are_positive_ratios_of_equal_results():
    figures = kernel_figures(PerfConfig(gemm_shape=(512, 16, 64), distance_shape=(3000, 8, 32), repeats=2))
    for key in ("projection_vs_gemm", "l1_vs_cdist", "linf_vs_cdist"):
        assert figures[key] > 0, key
    assert figures["output_bytes"] == 3000 * 32 * 4
    table = perf_table({"kernels": figures, "overhead": {"overhead_ratio": 1.1}})
    assert "| `l1_vs_cdist` |" in table and "| `overhead_ratio` | 1.10 | <= 1.3 |" in table


def test_a_missed_target_is_listed_and_marked_in_the_table():
    kernels = {"projection_vs_gemm": 0.95, "l1_vs_cdist": 0.87, "linf_vs_cdist": 0.96}
    perf = {"kernels": kernels, "overhead": {"overhead_ratio": 2.3}}
    assert targets_missed(perf) == ["l1_vs_cdist", "overhead_ratio"]
    table = perf_table(perf)
    assert "| `l1_vs_cdist` | 0.87 | >= 0.95 **MISSED** |" in table and "| `linf_vs_cdist` | 0.96 | >= 0.95 |" in table
    assert "| `overhead_ratio` | 2.30 | <= 1.3 **MISSED** |" in table
    assert targets_missed({"startup": {}, "load_average": {"kernels": [1.0, 1.0, 1.0]}}) == []


def test_the_scale_rows_memory_targets_are_listed_when_missed():
    rows = [{"clients": 100, "server_peak_bytes": 300e6}, {"clients": 1000, "server_peak_bytes": 450e6, "sublinear": True}]
    assert targets_missed({"scale": rows}) == []
    rows[1]["server_peak_bytes"] = 564e6
    assert targets_missed({"scale": rows}) == ["server_peak_at_1000"]
    rows.append({"clients": 10000, "server_peak_bytes": 6e9, "sublinear": False})
    assert targets_missed({"scale": rows}) == ["server_peak_at_1000", "server_peak_sublinear"]


def test_a_round_splits_into_parts_that_add_up_to_the_run():
    first = {"client_train_seconds": [2.0, 3.0], "round_replies_seconds": 9.0, "server_merge_seconds": 0.5,
             "server_scoring_seconds": 4.0, "round_seconds": 14.0}  # fmt: skip
    split = round_split({"rounds": [first]}, wall_seconds=20.0)
    assert split == {"client_training": 5.0, "transport": 4.0, "server_merge": 0.5, "server_scoring": 4.0,
                     "server_other": 0.5, "outside_round": 6.0}  # fmt: skip
    assert sum(split[part] for part in PARTS) == pytest.approx(20.0)
    table = perf_table({"overhead": {"overhead_ratio": 1.2, "flower_seconds": 20.0, "in_process_seconds": 16.7, "split": split}})
    assert "| transport | 4.0 | 20% |" in table and "| whole run on Flower | 20.0 | 100% |" in table
    with pytest.raises(ValueError, match="one-round"):
        round_split({"rounds": [first, first]}, wall_seconds=20.0)


def test_peak_memory_sees_a_large_allocation():
    assert peak_memory_added(lambda: bytearray(64 * 1024 * 1024)) >= 60 * 1024 * 1024


def test_startup_figures_time_fresh_processes_and_make_a_table():
    figures = startup_figures(samples=1)
    seconds = ("cli_help_seconds", "bench_help_seconds", "import_relatlas_seconds", "import_torch_seconds",
               "client_actor_import_seconds")  # fmt: skip
    assert all(figures[key] > 0 for key in seconds) and figures["samples"] == 1
    assert figures["import_ratio"] == figures["import_relatlas_seconds"] / figures["import_torch_seconds"]
    assert figures["client_actor_import_seconds"] > figures["import_relatlas_seconds"]  # the actor imports relatlas and more
    table = perf_table({"startup": figures})
    assert "| `cli_help` |" in table and "| `client_actor_import` |" in table and "| `import_ratio`" in table
    assert table.startswith("| startup") and "| figure | value | target |" not in table  # no empty ratio table


def test_the_backbone_section_times_a_frozen_backbone_s_epochs(tmp_path):
    from relatlas.benchmarks.perf_backbone import frozen_backbone_figures

    figures = frozen_backbone_figures("fashion-mnist", "", rows=48, side=32, epochs=3, folder=tmp_path / "backbone")
    assert figures["rows"] == 48 and figures["first_epoch_seconds"] > 0 and figures["later_epoch_seconds"] > 0
    assert figures["later_epoch_speedup"] == figures["first_epoch_seconds"] / figures["later_epoch_seconds"]
    assert len(list((tmp_path / "backbone" / "client-state" / "partition-0").glob("features-*.pt"))) == 1
    table = perf_table({"backbone": figures})
    assert "| `later_epoch_speedup` (target >= 5) |" in table and "| figure | value | target |" not in table


def test_overhead_turns_below_one_are_refused_in_one_line_before_anything_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "relatlas.server.cli", "bench", "perf", "--sections", "overhead", "--overhead-turns", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr == "relatlas: overhead-turns must be 1 or more; got 0\n"
    assert not (tmp_path / "runs").exists()


def test_an_unknown_section_is_refused_where_the_perf_config_is_built():
    with pytest.raises(ConfigError, match=r"^unknown perf sections \['kernel'\]; choose from kernels, overhead"):
        PerfConfig(sections=("kernels", "kernel"))


def test_the_fixed_costs_are_measured_on_a_real_ray_and_shown_beside_the_split():
    from relatlas.benchmarks.perf_floor import fixed_seconds

    assert not ray.is_initialized()
    fixed = fixed_seconds(RunConfig(dataset="digits", num_cpus=1.0))
    assert not ray.is_initialized()  # stopped: a section after it starts its own
    assert set(fixed) == {"ray_start", "actor_start", "ray_stop", "total"} and min(fixed.values()) > 0
    assert fixed["total"] == pytest.approx(fixed["ray_start"] + fixed["actor_start"] + fixed["ray_stop"])
    overhead = {"overhead_ratio": 1.5, "flower_seconds": 30.0, "in_process_seconds": 20.0, "split": dict.fromkeys(PARTS, 5.0),
                "fixed_seconds": fixed, "floor_ratio": (20.0 + fixed["total"]) / 20.0}  # fmt: skip
    table = perf_table({"overhead": overhead})
    assert f"| `floor_ratio`: the work in one process plus those | {overhead['floor_ratio']:.2f} |" in table
    assert f"ray start {fixed['ray_start']:.1f}, actor start {fixed['actor_start']:.1f}" in table
