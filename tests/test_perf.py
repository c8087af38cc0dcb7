"""The perf harness on tiny shapes: it checks the blocked kernels against torch.cdist
and reports ratios; the figures themselves belong to `relatlas bench perf`."""

from __future__ import annotations

from relatlas.benchmarks.perf import PerfConfig, kernel_figures, peak_memory_added, perf_table
from relatlas.benchmarks.startup import startup_figures


def test_kernel_figures_are_positive_ratios_of_equal_results():
    figures = kernel_figures(PerfConfig(gemm_shape=(512, 16, 64), distance_shape=(3000, 8, 32), repeats=2))
    for key in ("projection_vs_gemm", "l1_vs_cdist", "linf_vs_cdist"):
        assert figures[key] > 0, key
    assert figures["output_bytes"] == 3000 * 32 * 4
    table = perf_table({"kernels": figures, "overhead": {"overhead_ratio": 1.1}})
    assert "| `l1_vs_cdist` |" in table and "| `overhead_ratio` | 1.10 | <= 1.3 |" in table


def test_peak_memory_sees_a_large_allocation():
    assert peak_memory_added(lambda: bytearray(64 * 1024 * 1024)) >= 60 * 1024 * 1024


def test_startup_figures_time_fresh_processes_and_make_a_table():
    figures = startup_figures(samples=1)
    seconds = ("cli_help_seconds", "import_relatlas_seconds", "import_torch_seconds", "client_actor_import_seconds")
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
