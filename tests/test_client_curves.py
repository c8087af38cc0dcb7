"""What comes back to each client is scored round by round: its own space, its own
model on a held-back local test split, the stitched merged head; in results.json,
MLflow, the report and a figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import numpy as np
import pytest
from flwr.app import Context, RecordDict

from relatlas.api import Results
from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.splits import plan_for
from relatlas.clients import protocol
from relatlas.clients.client_app import local_data
from relatlas.clients.local_test import held_back_split
from relatlas.clients.task import Task
from relatlas.server.cli_report import print_report, rounds_table
from relatlas.server.client_curves import client_curves
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.replies import ReplyError, parse_reply
from relatlas.server.run_setup import RunSetup
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config
from tests.test_replies import EXPECTED, _reply, task_identity  # noqa: F401 - the fixture stamps messages

CLIENT_KEYS = ("client_accuracy", "client_local_test_accuracy", "stitched_own_classes_accuracy")


def test_held_back_rows_are_disjoint_stratified_and_seeded():
    rows, labels = np.arange(1000, 1300), np.repeat([0, 1, 2], 100)
    train, test = held_back_split(rows, labels, 0.2, seed=5, partition=1)
    assert set(train).isdisjoint(test) and sorted([*train, *test]) == list(rows)
    assert [int((labels[test - 1000] == c).sum()) for c in range(3)] == [20, 20, 20]
    again, other_seed, other_client = (held_back_split(rows, labels, 0.2, s, p)[1] for s, p in ((5, 1), (6, 1), (5, 2)))
    assert np.array_equal(test, again) and not np.array_equal(test, other_seed) and not np.array_equal(test, other_client)
    kept, none = held_back_split(rows, labels, 0.0, seed=5, partition=1)
    assert np.array_equal(kept, rows) and len(none) == 0  # 0: every row trains, as before the option


def test_a_fraction_that_leaves_nothing_to_test_on_is_refused_in_one_line():
    with pytest.raises(ValueError, match="local-test-fraction 0.1 of partition 2's 4 training rows leaves 4 to train on and 0"):
        held_back_split(np.arange(4), np.array([0, 0, 1, 1]), 0.1, seed=0, partition=2)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"local-test-fraction": 1.0}, "local-test-fraction must be below 1"),
        ({"local-test-fraction": -0.1}, "local-test-fraction must be zero or more"),
        ({"local-test-fraction": 0.2, "scenario": "continual"}, "continual clients are scored per experience"),
    ],
)
def test_bad_local_test_fractions_are_refused(values, reason):
    with pytest.raises(ConfigError, match=reason):
        RunConfig.from_mapping(values)


def test_the_client_trains_on_its_partition_less_the_held_back_rows():
    config = RunConfig(local_test_fraction=0.25, seed=3)
    dataset = load_dataset(config.dataset, None, config.seed)
    partition_rows = plan_for(dataset.y_train, config, config, config.seed).client_indices[1]
    facts = {"round": 1, "similarities": ("cosine",), "send_absolute": False, "run_key": "ab", "keep_state": False}
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})
    _, train, held_back = local_data(Task.of(config, partition_id=1, **facts), context)
    assert set(train).isdisjoint(held_back) and sorted([*train, *held_back]) == sorted(partition_rows)
    assert 0.2 < len(held_back) / len(partition_rows) < 0.3
    assert np.array_equal(held_back, local_data(Task.of(config, partition_id=1, **facts), context)[2])


def test_the_centralised_reference_trains_on_what_the_clients_train_on():
    """The union of the clients' training rows: a row one client holds back is in it only where
    another client holds it too (every client holds the shared classes' rows)."""
    held, full = RunSetup.prepare(RunConfig(local_test_fraction=0.25)), RunSetup.prepare(RunConfig())
    labels, rows = held.dataset.y_train, held.plan.client_indices
    trained = [held_back_split(r, labels[r], 0.25, 0, p)[0] for p, r in enumerate(rows)]
    assert np.array_equal(held.central.indices, np.unique(np.concatenate(trained)))
    assert np.array_equal(full.central.indices, np.unique(np.concatenate(rows)))
    assert len(held.central.indices) < len(full.central.indices)


@pytest.mark.parametrize(
    ("metrics", "reason"),
    [
        ({"partition-id": 1, "num-examples": 50}, "lacks metric 'local-test-accuracy', asked for by local-test-fraction"),
        ({"partition-id": 1, "num-examples": 50, protocol.LOCAL_TEST_ACCURACY: 1.5}, r"is 1.5; an accuracy lies in \[0, 1\]"),
    ],
)
def test_a_reply_without_a_valid_local_test_accuracy_is_refused(metrics, reason):
    expected = dataclasses.replace(EXPECTED, local_test=True)
    with pytest.raises(ReplyError, match=reason):
        parse_reply(_reply(metrics=metrics), expected)
    ok = {"partition-id": 1, "num-examples": 50, protocol.LOCAL_TEST_ACCURACY: 0.75}
    assert parse_reply(_reply(metrics=ok), expected).metrics[protocol.LOCAL_TEST_ACCURACY] == 0.75


def test_the_curve_has_none_where_a_client_did_not_answer():
    rounds = [
        {"round": 1, "merged_accuracy": 0.5, "client_partitions": [0, 1], "client_accuracy": [0.4, 0.6]},
        {"round": 2, "merged_accuracy": 0.7, "client_partitions": [1], "client_accuracy": [0.8]},
    ]
    curves = client_curves(rounds)
    assert curves == {
        "rounds": [1, 2],
        "merged_accuracy": [0.5, 0.7],
        "clients": {"0": {"client_accuracy": [0.4, None]}, "1": {"client_accuracy": [0.6, 0.8]}},
    }


def test_three_rounds_on_digits_record_every_clients_curve(tmp_path, capsys):
    config = small_run_config(
        tmp_path, rounds=3, epochs=1, **{"probe-epochs": 5, "simulation-baselines": False, "local-test-fraction": 0.2}
    )
    run_simulation(config)
    results = read_results(config)
    curves = results["client_curves"]
    assert results["status"] == "completed" and curves["rounds"] == [1, 2, 3] and set(curves["clients"]) == {"0", "1", "2"}
    for client in curves["clients"].values():
        for key in CLIENT_KEYS:
            assert len(client[key]) == 3 and all(0 <= v <= 1 for v in client[key]), key
    averages = curves["average_client_test_accuracy"]
    assert len(averages) == 3 and all(0 <= v <= 1 for v in averages)
    last = [client["client_local_test_accuracy"][2] for client in curves["clients"].values()]
    assert averages[2] == pytest.approx(np.mean(last)) and results["average_client_test_accuracy"] == averages[2]
    assert averages[2] > 0.5  # digits' 8x8 images: a trained client scores well on its own classes

    tracking = mlflow.MlflowClient(config.tracking_uri)
    for metric in ("client_local_test_accuracy/client1", "client_accuracy/client2", "average_client_test_accuracy"):
        history = tracking.get_metric_history(results["mlflow_run_id"], metric)
        assert [m.step for m in history] == [1, 2, 3], metric
    figure = Path(config.out_dir) / "client_curves.png"
    assert figure.stat().st_size > 0
    assert "client_curves.png" in {a.path for a in tracking.list_artifacts(results["mlflow_run_id"])}

    table = rounds_table(results)
    assert table.row_count == 3 and "local test" in [column.header for column in table.columns]
    print_report(Results.from_file(Path(config.out_dir) / "results.json"), config.tracking_uri)
    printed = capsys.readouterr().out
    assert "round by round" in printed and "average client test" in printed
