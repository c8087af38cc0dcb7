"""Hostile clients on the real simulation engine (digits): well-formed replies
that lie. Every attack of ``tests/hostile_clients.py`` is dropped with its reason;
the one that passes every check, a made-up space of valid cosines, is dropped by
the outlier screen or outvoted by a robust merge. ``pytest -m faults -s
tests/test_attacks.py`` prints the table docs/robustness.md quotes."""

from __future__ import annotations

import json

import cloudpickle
import pytest

from relatlas.server.exchange import FederationError
from relatlas.server.simulation import run_simulation
from tests import hostile_clients
from tests.conftest import read_results, small_run_config
from tests.hostile_clients import ATTACKS, hostile_app

cloudpickle.register_pickle_by_value(hostile_clients)  # Ray workers need not import tests/

REASONS = {
    "float64-1e300": "has dtype float64; expected float32 or float16",
    "float32-3e38": "holds values in [3e+38, 3e+38]; expected [-1, 1]",
    "scaled-x1000": "expected [-1, 1]",
    "uniform-random": "outlier: its space is",
    "num-examples-1e15": "num-examples must be an integer in [1, ",
    "metrics-list-1e6": "bytes; this round's limit is",
    "train-seconds-inf": "metric 'train-seconds' holds a value that is not a finite number",
    "metric-name-600": "is not 1-250 letters, digits, spaces or _-./",
    "claims-partition-0": "claims partition-id 0; the server assigned it ",
}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a run writes to relative paths lands here


def _run(tmp_path, name: str, attacks: dict[int, str], **overrides) -> dict:
    defaults = {"simulation-baselines": False, "client-scores": False, "epochs": 3, "probe-epochs": 30}  # docs/robustness.md
    config = small_run_config(tmp_path / name, **defaults | overrides)
    run_simulation(config, client_app=hostile_app(attacks))
    return read_results(config)


@pytest.mark.faults
def test_every_attack_is_dropped_with_its_reason_and_the_run_completes(tmp_path):
    attackers = {2 + i: attack for i, attack in enumerate(ATTACKS)}  # partitions 0 and 1 are honest
    results = _run(
        tmp_path, "all", attackers, split="same-classes", **{"num-clients": 2 + len(ATTACKS), "shared-classes": 0},
        **{"merge-weights": "samples", "outlier-threshold": 3.0},
    )  # fmt: skip
    assert results["status"] == "completed" and results["client_partitions"] == [0, 1]
    reasons = {f["node"]: f["reason"] for f in results["failures"]}
    assert len(reasons) == len(ATTACKS)
    for attack, expected in REASONS.items():
        assert sum(expected in reason for reason in reasons.values()) >= 1, attack
    text = (tmp_path / "all" / "out" / "results.json").read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"results.json holds {name}"))  # strict JSON


@pytest.mark.faults
def test_robust_merges_keep_the_accuracy_of_the_clean_run_under_a_made_up_space(tmp_path, capsys):
    """Partition 2 of 3 sends uniformly random cosines, which pass every check of a reply."""
    honest = _run(tmp_path, "clean", {})
    clean = honest["merged_accuracy"]
    rows = {
        "mean": _run(tmp_path, "mean", {2: "uniform-random"}),
        "mean + screen 3": _run(tmp_path, "screen", {2: "uniform-random"}, **{"outlier-threshold": 3.0}),
        "median": _run(tmp_path, "median", {2: "uniform-random"}, aggregation="median"),
        "trimmed-mean": _run(tmp_path, "trimmed", {2: "uniform-random"}, aggregation="trimmed-mean"),
        "dropped (x1000)": _run(tmp_path, "scaled", {2: "scaled-x1000"}),
    }
    with capsys.disabled():
        print(f"\nclean run (mean): merged accuracy {clean:.3f}, outlier scores {honest['client_outlier_score']}")
        for name, results in rows.items():
            change = results["merged_accuracy"] - clean
            scores = [round(score, 1) for score in results["client_outlier_score"]]
            clients = results["client_partitions"]
            print(f"{name}: merged {results['merged_accuracy']:.3f} ({change:+.3f}), clients {clients}, outlier scores {scores}")
    assert rows["mean"]["merged_accuracy"] < clean - 0.1  # the attack works on the plain mean
    assert rows["mean + screen 3"]["client_partitions"] == [0, 1] and max(honest["client_outlier_score"]) < 2.0
    for name in ("mean + screen 3", "median", "trimmed-mean"):
        assert rows[name]["merged_accuracy"] >= clean - 0.02, name


@pytest.mark.faults
def test_trimmed_mean_sized_by_max_hostile_resists_two_colluders_of_five(tmp_path):
    """Partitions 3 and 4 of 5 send the same made-up cosines (``uniform-random`` draws one space for both):
    a 20 % trim cuts one value each end and keeps a colluder's; ``--max-hostile 2`` cuts two."""
    colluders, five = {3: "uniform-random", 4: "uniform-random"}, {"num-clients": 5, "aggregation": "trimmed-mean"}
    clean = _run(tmp_path, "clean", {}, **five)["merged_accuracy"]
    undeclared = _run(tmp_path, "undeclared", colluders, **five)["merged_accuracy"]
    declared = _run(tmp_path, "declared", colluders, **five, **{"max-hostile": 2})["merged_accuracy"]
    assert undeclared < clean - 0.1 and declared >= clean - 0.05, (clean, undeclared, declared)


@pytest.mark.faults
def test_a_round_with_too_few_replies_for_the_declared_hostile_count_stops_in_one_line(tmp_path):
    config = small_run_config(tmp_path, **{"num-clients": 5, "aggregation": "trimmed-mean", "max-hostile": 2,
                                           "simulation-baselines": False, "client-scores": False})  # fmt: skip
    with pytest.raises(FederationError, match="round 1: 4 valid replies: max-hostile 2 is 2 of 4 clients; trimmed-mean"):
        run_simulation(config, client_app=hostile_clients.absent_app(2, {1}))
    assert read_results(config)["status"] == "failed"
