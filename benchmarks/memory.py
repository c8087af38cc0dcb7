"""A process's resident memory, as Linux reports it in ``/proc/self/status``: what
``bench perf`` measures the peaks of its kernels and of a federation's server with."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path


def rss_kib(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak since the last reset) of this process, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def peak_memory_added(fn: Callable[[], object]) -> int:
    """Bytes the process's peak resident memory rose while ``fn`` ran (Linux, glibc)."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed memory back, so reuse shows as growth
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    before = rss_kib("VmRSS")
    fn()
    return max(0, rss_kib("VmHWM") - before) * 1024
