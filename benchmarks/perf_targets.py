"""The targets ``relatlas bench perf`` holds its ratios to, and which of them a run missed.

A figure that moves the wrong way has to show in the run that measured it: issue 23
found the kernel ratios at 0.87 (docs 0.98) and the overhead at 2.30 (docs 1.66)
by comparing with the docs by hand. ``perf.json`` now lists ``targets_missed`` and
``table.md`` marks each missed row, and ``perf.json`` records the machine's load
average after each section, since a loaded machine moves every timed figure.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from relatlas.benchmarks.perf_scale import scale_targets_missed

# (section, figure) -> (comparison, bound): what issue 23 asks of one run's perf.json
TARGETS: dict[tuple[str, str], tuple[str, float]] = {
    ("kernels", "projection_vs_gemm"): (">=", 0.9),
    ("kernels", "l1_vs_cdist"): (">=", 0.95),
    ("kernels", "linf_vs_cdist"): (">=", 0.95),
    ("overhead", "overhead_ratio"): ("<=", 1.3),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}
MISSED = "**MISSED**"


def target_text(section: str, figure: str) -> str:
    comparison, bound = TARGETS[(section, figure)]
    return f"{comparison} {bound:g}"


def meets_target(section: str, figure: str, value: float) -> bool:
    comparison, bound = TARGETS[(section, figure)]
    return _COMPARE[comparison](value, bound)


def targets_missed(perf: dict[str, Any]) -> list[str]:
    """The figures of ``perf`` (sections as ``run_perf`` writes them) that miss their target,
    the scale rows' memory targets included (``scale_targets_missed``)."""
    return [
        figure
        for (section, figure) in TARGETS
        if isinstance(perf.get(section), dict)
        and figure in perf[section]
        and not meets_target(section, figure, perf[section][figure])
    ] + scale_targets_missed(perf.get("scale", []))


def target_rows(perf: dict[str, Any]) -> list[str]:
    """A Markdown row per measured figure with a target, the target marked when missed."""
    rows = []
    for section, figure in TARGETS:
        value = perf.get(section, {}).get(figure) if isinstance(perf.get(section), dict) else None
        if value is not None:
            mark = "" if meets_target(section, figure, value) else f" {MISSED}"
            rows.append(f"| `{figure}` | {value:.2f} | {target_text(section, figure)}{mark} |")
    return rows
