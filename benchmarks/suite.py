"""What every benchmark suite shares: one MLflow parent run with each trial
nested under it, trials run in parallel by ``benchmarks/sweep.py``, and records
plus a markdown table rewritten after every trial, so an interrupted suite
keeps what finished."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow

from relatlas.benchmarks.sweep import SweepResources, Trial, run_trials, run_trials_here
from relatlas.safe_files import private_dir, write_text_atomic
from relatlas.server.tracking import use_tracking


def mean_std(values: Sequence[float | None], missing: str = "-") -> str:
    """``mean ± std`` of the values that exist, ``missing`` if none does."""
    values = [v for v in values if v is not None]
    if not values:
        return missing
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def grouped_table(
    records: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    columns: Mapping[str, str],
    count: str = "seeds",
    missing: str = "-",
) -> str:
    """Markdown: one row per distinct ``keys`` (in order of first appearance), each
    of ``columns`` (label -> record key) as mean ± std over the group (``missing`` where
    no record of the group has a value), then the group's size (column ``count``)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record[k] for k in keys), []).append(record)
    header = [*keys, *columns, count]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in groups.items():
        cells = [str("-" if k is None else k) for k in key]
        cells += [mean_std([g[column] for g in group], missing) for column in columns.values()]
        lines.append("| " + " | ".join([*cells, str(len(group))]) + " |")
    return "\n".join(lines)


@contextmanager
def suite_run(name: str, params: Mapping[str, Any], tracking_uri: str, experiment: str) -> Iterator[str]:
    """The suite's MLflow parent run; yields its id for trials to nest under."""
    use_tracking(tracking_uri, experiment)
    with mlflow.start_run(run_name=name) as parent:
        mlflow.log_params({key: str(value) for key, value in params.items()})
        yield parent.info.run_id


def save_records(out_dir: Path, records: Sequence[Mapping[str, Any]], tables: str) -> None:
    """Rewrite ``suite.json`` and ``table.md`` (call after every trial)."""
    private_dir(out_dir)
    write_text_atomic(out_dir / "suite.json", json.dumps(list(records), indent=2))
    write_text_atomic(out_dir / "table.md", tables + "\n")


def failures_note(records: Sequence[Mapping[str, Any]]) -> str:
    failed = [r for r in records if r["status"] == "failed"]
    return "\n".join(f"- failed: {r['trial']}: {r['error']}" for r in failed)


def run_sweep(
    name: str,
    params: Mapping[str, Any],
    trials: Sequence[Trial],
    resources: SweepResources,
    *,
    out_dir: Path,
    tracking_uri: str,
    experiment: str,
    table: Callable[[Sequence[Mapping[str, Any]]], str],
    in_process: bool = False,
) -> list[dict[str, Any]]:
    """Run ``trials`` in parallel under one MLflow suite run ``name`` (``in_process``: one
    after another, without Ray: ``run_trials_here``); ``table`` renders the completed
    records. Failed trials are listed under the table."""
    arrived: list[dict[str, Any]] = []

    def render(records: Sequence[Mapping[str, Any]]) -> str:
        completed = [r for r in records if r["status"] == "completed"]
        return "\n\n".join(part for part in (table(completed) if completed else "", failures_note(records)) if part)

    def keep(record: dict[str, Any]) -> None:
        arrived.append(record)
        save_records(out_dir, arrived, render(arrived))

    with suite_run(name, params, tracking_uri, experiment) as parent:
        records = (run_trials_here if in_process else run_trials)(trials, parent, resources, keep)
        save_records(out_dir, records, render(records))
        for name in ("table.md", "suite.json"):
            mlflow.log_artifact(str(out_dir / name))
    print(render(records))
    return records
