"""Where a federation's time went, from its ``results.json``: what ``bench perf``'s
overhead section reports next to ``overhead_ratio``, so that a slower run says which part slowed.

A round's parts (seconds, from the round's first ``rounds[i]``):

- ``client_training``: the clients' own training (``client_train_seconds``), summed:
  the overhead section's clients hold both CPUs, so they train one at a time;
- ``transport``: from the round's first message to its last reply, less that
  training: Flower's messages, a client actor's start, imports and data, its
  projection and payload;
- ``server_merge``, ``server_scoring``: the merge, then the probes and baselines
  (``server/evaluation.py``);
- ``server_other``: the rest of the round (checking and screening replies);
- ``outside_round``: the run's wall time outside its rounds (Ray's start and stop,
  the server's setup, results and MLflow).
"""

from __future__ import annotations

from typing import Any

PARTS = ("client_training", "transport", "server_merge", "server_scoring", "server_other", "outside_round")


def round_split(results: dict[str, Any], wall_seconds: float) -> dict[str, float]:
    """The parts of a one-round federation's ``wall_seconds`` (see the module's docstring)."""
    if len(results["rounds"]) != 1:
        raise ValueError(f"the split is of a one-round federation; this one has {len(results['rounds'])} rounds")
    first = results["rounds"][0]
    training = float(sum(first["client_train_seconds"]))
    merge, scoring = first["server_merge_seconds"], first["server_scoring_seconds"]
    return {
        "client_training": training,
        "transport": first["round_replies_seconds"] - training,
        "server_merge": merge,
        "server_scoring": scoring,
        "server_other": first["round_seconds"] - first["round_replies_seconds"] - merge - scoring,
        "outside_round": wall_seconds - first["round_seconds"],
    }


def overhead_split_table(overhead: dict[str, Any]) -> list[str]:
    """Markdown rows of the overhead federation's split, beside the same work in one process."""
    split = overhead.get("split")
    if not split:
        return []
    lines = ["", "| overhead federation: where the time went | seconds | share |", "|---|---|---|"]
    total = overhead["flower_seconds"]
    lines += [f"| {part.replace('_', ' ')} | {split[part]:.1f} | {split[part] / total:.0%} |" for part in PARTS]
    lines.append(f"| whole run on Flower | {total:.1f} | 100% |")
    lines.append(f"| the same work in one process | {overhead['in_process_seconds']:.1f} | |")
    if "fixed_seconds" in overhead:  # benchmarks/perf_floor.py
        fixed = overhead["fixed_seconds"]
        parts = ", ".join(f"{part.replace('_', ' ')} {fixed[part]:.1f}" for part in fixed if part != "total")
        lines.append(f"| on their own: {parts} | {fixed['total']:.1f} | |")
        lines.append(f"| `floor_ratio`: the work in one process plus those | {overhead['floor_ratio']:.2f} | |")
    return lines
