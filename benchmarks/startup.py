"""``relatlas bench perf --sections startup``: how long relatlas takes to start.

Each figure is the median over fresh Python processes, so no import is cached:

- ``cli_help_seconds``: wall time of ``relatlas --help``, the whole process;
- ``bench_help_seconds``: the same for ``relatlas bench perf --help``, whose options read
  light defaults (``benchmarks/perf_config.py``): no torch, MLflow or Avalanche (12 s
  with all of them, 7 s with the perf suite's modules, on 2026-12-03);
- ``import_relatlas_seconds``, ``import_torch_seconds``: ``import relatlas`` and
  ``import torch``, timed inside the process (interpreter start excluded);
- ``client_actor_import_seconds``: what a Ray client actor imports before its
  first message (``relatlas.clients.client_app``);
- ``import_ratio``: import relatlas over import torch (target <= 1.3).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

CLIENT_ACTOR_MODULE = "relatlas.clients.client_app"
_TIMED_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def _import_seconds(module: str) -> float:
    """Seconds ``import module`` takes in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED_IMPORT.format(module=module)], capture_output=True, text=True, check=True, timeout=300
    )
    return float(done.stdout.strip().splitlines()[-1])


def _cli_help_seconds(*command: str) -> float:
    """Wall seconds of ``relatlas *command --help`` in a fresh interpreter."""
    started = time.perf_counter()
    cli = [sys.executable, "-m", "relatlas.server.cli", *command, "--help"]
    subprocess.run(cli, capture_output=True, check=True, timeout=300)
    return time.perf_counter() - started


def startup_figures(samples: int = 5) -> dict[str, Any]:
    """The median of ``samples`` fresh processes for each figure, and the import ratio."""

    def median(measure: Any, *args: str) -> float:
        return statistics.median(measure(*args) for _ in range(samples))

    figures = {
        "cli_help_seconds": median(_cli_help_seconds),
        "bench_help_seconds": median(_cli_help_seconds, "bench", "perf"),
        "import_relatlas_seconds": median(_import_seconds, "relatlas"),
        "import_torch_seconds": median(_import_seconds, "torch"),
        "client_actor_import_seconds": median(_import_seconds, CLIENT_ACTOR_MODULE),
        "samples": samples,
    }
    figures["import_ratio"] = figures["import_relatlas_seconds"] / figures["import_torch_seconds"]
    return figures
