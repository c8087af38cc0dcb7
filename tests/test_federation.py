"""End to end on Flower's simulation engine (Ray backend), with a real MLflow store."""

from __future__ import annotations

import dataclasses

import cloudpickle
import mlflow
import pytest

from relatlas.server.exchange import FederationError
from relatlas.server.simulation import run_simulation
from tests import faulty_clients
from tests.conftest import TIMINGS, read_results, small_run_config

cloudpickle.register_pickle_by_value(faulty_clients)  # Ray workers need not import tests/

# what a run spends, not what it computes: the bytes sent also grow after a resume, which re-sends the public inputs' rows


def _without_timings(results: dict) -> dict:
    kept = {k: v for k, v in results.items() if k not in TIMINGS}
    kept["rounds"] = [{k: v for k, v in r.items() if k not in TIMINGS} for r in results["rounds"]]
    return kept


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # whatever a run writes to relative paths lands here


def test_three_clients_on_digits_write_complete_results(tmp_path):
    config = small_run_config(tmp_path, rounds=2)
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    for key in ("merged_accuracy", "centralized_accuracy", "concat_accuracy", "concat_absolute_accuracy", "owner_accuracy"):
        assert 0.5 < results[key] <= 1.0, key
    stitching = ("stitched_accuracy", "stitched_own_classes_accuracy", "stitched_other_classes_accuracy")
    assert all(len(results[key]) == 3 for key in ("client_accuracy", *stitching))
    assert 0.0 <= results["owner_shuffled_accuracy"] <= 1.0
    assert 0.5 < results["cka_merged_centralized"] <= 1.0
    assert results["payload_bytes_per_client"] == 539 * 64 * 4  # digits test set x anchors x fp32
    for r in results["rounds"]:  # where each round went: replies (training included), then the merge and the scoring
        assert r["server_merge_seconds"] > 0 and r["server_scoring_seconds"] > 0
        assert 0 < r["round_replies_seconds"] < r["round_replies_seconds"] + r["server_merge_seconds"] < r["round_seconds"]

    run = mlflow.MlflowClient(config.tracking_uri).get_run(results["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["aggregation"] == "mean"
    assert run.data.metrics["merged_accuracy"] == pytest.approx(results["merged_accuracy"])
    for key in stitching:
        assert run.data.metrics[f"{key}/client2"] == pytest.approx(results[key][2]), key
    history = mlflow.MlflowClient(config.tracking_uri).get_metric_history(run.info.run_id, "merged_accuracy")
    assert [m.step for m in history] == [1, 2]
    artifacts = {a.path for a in mlflow.MlflowClient(config.tracking_uri).list_artifacts(run.info.run_id)}
    assert {"results.json", "spaces.png", "accuracy.png"} <= artifacts


def test_same_seed_gives_identical_numbers(tmp_path):
    first, second = (
        small_run_config(tmp_path / "a", aggregation="product"),
        small_run_config(tmp_path / "b", aggregation="product"),
    )
    run_simulation(first)
    run_simulation(second)
    one, two = _without_timings(read_results(first)), _without_timings(read_results(second))
    one["config"].pop("out-dir"), two["config"].pop("out-dir")
    one["config"].pop("tracking-uri"), two["config"].pop("tracking-uri")
    assert one == two


@pytest.mark.faults
def test_failing_and_garbage_clients_are_dropped_and_the_round_completes(tmp_path):
    config = small_run_config(tmp_path, **{"num-clients": 5, "shared-classes": 2, "simulation-baselines": False})
    run_simulation(config, client_app=faulty_clients.app)
    results = read_results(config)
    assert results["status"] == "completed"
    assert results["client_partitions"] == [0, 4] and results["clients_answered"] == 2
    reasons = " | ".join(sorted(f["reason"] for f in results["failures"]))
    assert len(results["failures"]) == 3 and {f["round"] for f in results["failures"]} == {1}
    assert "client failed: RuntimeError: simulated crash on partition 1" in reasons
    assert "NaN or infinite" in reasons and "has shape (539, 63); expected (539, 64)" in reasons


def test_class_matched_anchors_federation_runs_end_to_end(tmp_path):
    config = small_run_config(tmp_path, **{"anchors-mode": "class-matched"})
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert 0.5 < results["merged_accuracy"] <= 1.0 and 0.5 < results["cka_merged_centralized"] <= 1.0
    assert results["payload_bytes_per_client"] == 539 * 64 * 4  # m own anchors, as many as shared ones


@pytest.mark.parametrize(("mode", "extra"), [("bootstrapped", {}), ("translated", {"translation": "procrustes"})])
def test_two_phase_anchor_modes_run_end_to_end(tmp_path, mode, extra):
    config = small_run_config(tmp_path, **{"anchors-mode": mode, "seed-anchors": 8} | extra)
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert 0.5 < results["merged_accuracy"] <= 1.0 and results["client_partitions"] == [0, 1, 2]
    assert results["payload_bytes_per_client"] > 539 * 64 * 4  # the first phase's Gram matrix or embeddings count too


@pytest.mark.parametrize(("payload", "nbytes"), [("fp16", 539 * 64 * 2), ("topk:8", 539 * 8 * (4 + 2))])
def test_compact_payloads_shrink_what_clients_send(tmp_path, payload, nbytes):
    config = small_run_config(tmp_path, payload=payload, **{"simulation-baselines": False, "eval-samples": 0})
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert results["payload_bytes_per_client"] == nbytes and 0.5 < results["merged_accuracy"] <= 1.0


@pytest.mark.faults
def test_two_phase_rounds_drop_clients_that_fail_in_either_phase(tmp_path):
    config = small_run_config(tmp_path, **{"num-clients": 5, "shared-classes": 2, "simulation-baselines": False})
    config = dataclasses.replace(config, anchors_mode="bootstrapped", seed_anchors=4)
    run_simulation(config, client_app=faulty_clients.app)
    results = read_results(config)
    assert results["status"] == "completed" and results["client_partitions"] == [0, 4]
    reasons = " | ".join(sorted(f["reason"] for f in results["failures"]))
    assert "simulated crash on partition 1" in reasons
    assert "anchoring['gram'] holds NaN" in reasons and "has shape (539, 63); expected (539, 64)" in reasons


@pytest.mark.faults
def test_malformed_and_late_replies_are_dropped_with_their_reasons(tmp_path):
    config = small_run_config(
        tmp_path, **{"num-clients": 10, "shared-classes": 0, "split": "same-classes", "simulation-baselines": False,
                     "round-timeout": 40.0, "epochs": 1},
    )  # fmt: skip
    run_simulation(config, client_app=faulty_clients.app)
    results = read_results(config)
    assert results["status"] == "completed" and results["client_partitions"] == [0, 4, 9]
    reasons = {f["reason"] for f in results["failures"]}
    assert any("lacks array 'cosine'; has ['cosinus']" in r for r in reasons)
    assert any("dtype int64; expected float32 or float16" in r for r in reasons)
    assert any("bytes; this round's limit is" in r for r in reasons)  # checked before decoding
    assert "no reply within round-timeout 40 s" in reasons
    assert len(results["failures"]) == 7 and {f["round"] for f in results["failures"]} == {1}


@pytest.mark.faults
def test_too_few_clients_stops_with_a_clear_error_and_keeps_the_record(tmp_path):
    config = small_run_config(
        tmp_path, **{"num-clients": 4, "shared-classes": 2, "min-clients": 3, "simulation-baselines": False}
    )
    with pytest.raises(FederationError, match="round 1: 1 valid replies, min-clients is 3"):
        run_simulation(config, client_app=faulty_clients.app)
    results = read_results(config)
    assert results["status"] == "failed" and "min-clients" in results["error"] and len(results["failures"]) == 3
    assert mlflow.MlflowClient(config.tracking_uri).get_run(results["mlflow_run_id"]).info.status == "FAILED"


def test_two_experience_continual_federation_writes_complete_results(tmp_path, capfd):
    config = small_run_config(
        tmp_path,
        scenario="continual", experiences=2, split="same-classes", strategy="replay", regularizer="casper", buffer=60,
        **{"casper-batch": 16, "casper-k": 5, "epochs": 3},
    )  # fmt: skip
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    matrix = results["accuracy_matrix"]
    assert matrix[0][1] is None and all(0.0 <= v <= 1.0 for v in (matrix[0][0], matrix[1][0], matrix[1][1]))
    assert results["average_accuracy"] == pytest.approx((matrix[1][0] + matrix[1][1]) / 2)
    assert results["forgetting"] == pytest.approx(matrix[0][0] - matrix[1][0])
    for key in ("client_accuracy_matrix", "client_average_accuracy", "client_forgetting", "client_space_accuracy_matrix"):
        assert len(results[key]) == 3 and None not in results[key], key
    assert all(len(m[1]) == 2 and m[1][1] is not None for m in results["client_accuracy_matrix"])

    client = mlflow.MlflowClient(config.tracking_uri)
    parent = client.get_run(results["mlflow_run_id"])
    assert parent.data.metrics["average_accuracy"] == pytest.approx(results["average_accuracy"])
    assert {"accuracy_matrix.png", "accuracy_curves.png"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = client.search_runs([parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(run.info.run_name for run in children) == ["client-0", "client-1", "client-2"]
    child = children[0]
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "Top1_Acc_Exp/eval_phase/test_stream/Exp000")
    assert [m.step for m in history] == [1, 2]
    assert {"accuracy_matrix.png", "accuracy_curves.png"} <= {
        a.path.split("_", 1)[1] for a in client.list_artifacts(child.info.run_id)
    }
    printed = "".join(capfd.readouterr())  # the Ray workers' output, forwarded here (relatlas/library_noise.py)
    assert [noise for noise in ("JAXopt", "SADeprecationWarning", "Manually terminating") if noise in printed] == []


def test_casper_with_rho_zero_changes_nothing(tmp_path):
    """The plugin attached with rho 0 draws and computes nothing: the same results as no regulariser."""
    continual = {"scenario": "continual", "experiences": 2, "split": "same-classes", "buffer": 60, "epochs": 1}
    none = small_run_config(tmp_path / "none", **continual, regularizer="none", **{"eval-samples": 200})
    inert = small_run_config(tmp_path / "rho0", **continual, regularizer="casper", **{"casper-rho": 0.0, "eval-samples": 200})
    run_simulation(none)
    run_simulation(inert)
    one, two = _without_timings(read_results(none)), _without_timings(read_results(inert))
    for results in (one, two):
        for key in ("out-dir", "tracking-uri", "regularizer", "casper-rho"):
            results["config"].pop(key)
    assert one == two
