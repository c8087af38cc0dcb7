"""``--algorithm``: the baselines in relatlas's harness (local, FedAvg, FedProto, the
centralised reference), each a real Flower simulation on small digits runs, and the
registry a user's own algorithm joins."""

from __future__ import annotations

import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch

from relatlas.aggregation.prototypes import average_prototypes, nearest_prototype
from relatlas.benchmarks.htfl import htfl_config
from relatlas.clients.algorithm_fedproto import prototype_weight
from relatlas.encoder_spec import EncoderSpec
from relatlas.registries import ALGORITHMS
from relatlas.server.algorithm_strategy import check_baseline
from relatlas.server.algorithms import FederatedAlgorithm, algorithm_of
from relatlas.server.config import ConfigError, RunConfig
from tests.conftest import read_results, small_run_config

SMALL = {"rounds": 2, "epochs": 1, "probe-epochs": 5, "num-clients": 2, "eval-samples": 200}


def _run(tmp_path, name="out", **overrides):
    import relatlas

    config = small_run_config(tmp_path, **(SMALL | {"out-dir": str(tmp_path / name)} | overrides))
    results = relatlas.run(config)
    assert results.completed, results.error
    return config, read_results(config)


def _fraction(value) -> bool:
    return isinstance(value, float) and 0.0 <= value <= 1.0


def test_local_clients_are_relatlas_clients_scored_by_their_own_models(tmp_path):
    """relatlas's clients train alone too: the same run under ``local`` gives the same
    clients (same spaces, same scores), and each client's own model is scored besides."""
    _, relatlas_run = _run(tmp_path, "relatlas")
    _, local = _run(tmp_path, "local", algorithm="local")
    assert local["client_accuracy"] == relatlas_run["client_accuracy"]
    assert local["merged_accuracy"] == relatlas_run["merged_accuracy"]
    assert "client_model_accuracy" not in relatlas_run and relatlas_run["config"]["algorithm"] == "relatlas"
    assert [r["algorithm"] for r in local["rounds"]] == ["local", "local"]
    assert len(local["client_model_accuracy"]) == 2 and all(map(_fraction, local["client_model_accuracy"]))


def test_fedavg_averages_one_model_with_flowers_strategy(tmp_path):
    config, results = _run(tmp_path, algorithm="fedavg")
    assert len(results["rounds"]) == 2 and all(_fraction(r["global_accuracy"]) for r in results["rounds"])
    assert _fraction(results["merged_accuracy"]) and all(map(_fraction, results["client_model_accuracy"]))
    run = mlflow.MlflowClient(config.tracking_uri).get_run(results["mlflow_run_id"])
    assert {"global_accuracy", "client_model_accuracy/client0", "merged_accuracy"} <= set(run.data.metrics)


def test_fedproto_sends_prototypes_back_to_heterogeneous_encoders(tmp_path):
    _, results = _run(tmp_path, algorithm="fedproto:0.5", encoder="mlp,mlp:hidden=32", **{"local-test-fraction": 0.2})
    assert [r["prototype_classes"] for r in results["rounds"]] == [10, 10]  # shared-classes: every class held by some client
    assert len(results["client_local_test_accuracy"]) == 2 and all(map(_fraction, results["client_local_test_accuracy"]))
    assert _fraction(results["average_client_test_accuracy"])  # HtFLlib's score, as relatlas's clients report it
    assert len(results["client_prototype_accuracy"]) == 2 and all(map(_fraction, results["client_prototype_accuracy"]))
    assert all(map(_fraction, results["client_model_accuracy"])) and _fraction(results["merged_accuracy"])
    assert results["client_encoder_parameters"][0] != results["client_encoder_parameters"][1]


def test_centralised_is_an_algorithm_of_its_own(tmp_path):
    _, results = _run(tmp_path, algorithm="centralised", **{"simulation-baselines": False})
    assert [r["round"] for r in results["rounds"]] == [1, 2]
    assert _fraction(results["global_accuracy"]) and _fraction(results["centralized_accuracy"])


def test_fedprotos_server_average_is_the_mean_over_the_clients_holding_each_class():
    prototypes = torch.tensor(
        [
            [[1.0, 2.0], [0.0, 0.0], [4.0, 4.0]],  # client 0 holds classes 0 and 2
            [[3.0, 6.0], [5.0, 1.0], [0.0, 0.0]],  # client 1 holds classes 0 and 1
            [[2.0, 1.0], [9.0, 9.0], [2.0, 8.0]],  # client 2 holds classes 0 and 2; its class-1 row is ignored
        ]
    )
    counts = torch.tensor([[5, 0, 1], [1, 7, 0], [100, 0, 3]])
    average, held = average_prototypes(prototypes, counts)
    by_hand = torch.tensor([[(1 + 3 + 2) / 3, (2 + 6 + 1) / 3], [5.0, 1.0], [(4 + 2) / 2, (4 + 8) / 2]])
    torch.testing.assert_close(average, by_hand)  # unweighted by counts, as HtFLlib's proto_aggregation
    assert held.tolist() == [True, True, True]
    _, none_hold_two = average_prototypes(prototypes[:, :2], counts[:, :2] * torch.tensor([1, 0]))
    assert none_hold_two.tolist() == [True, False]
    embeddings = torch.tensor([[5.0, 1.5], [2.9, 6.1], [2.0, 3.0]])
    assert nearest_prototype(embeddings, average, held).tolist() == [1, 2, 0]
    assert nearest_prototype(embeddings, average, torch.tensor([True, False, True])).tolist() == [0, 2, 0]


def test_fedavg_refuses_clients_of_different_encoders_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "relatlas.server.cli", "run", "--algorithm", "fedavg", "--encoder", "mlp,mlp:hidden=32"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert done.stderr.startswith("relatlas: algorithm fedavg averages one architecture, but encoder gives the clients 2 (mlp, ")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"algorithm": "nope"}, "unknown algorithm 'nope'; registered: relatlas, local, fedavg, fedproto, centralised"),
        ({"algorithm": "fedproto:-1"}, "algorithm fedproto:-1: fedproto:LAMBDA takes a finite weight of 0 or more; got '-1'"),
        ({"algorithm": "fedproto", "encoder": "mlp,mlp:dim=32"}, "fedproto averages prototypes of one width, but the encoders"),
        ({"algorithm": "local", "scenario": "continual"}, "algorithm local runs the static scenario"),
        ({"algorithm": "fedavg", "anchors-mode": "translated"}, "anchors-mode translated has two"),
        ({"algorithm": "fedproto", "atlas-weight": 1, "public-pool": 100}, "--atlas-weight is relatlas's feedback"),
        ({"algorithm": "centralised", "client-data": "digits"}, "with client-data it stays on the clients"),
    ],
)
def test_a_run_an_algorithm_cannot_do_is_refused_in_one_line(values, message):
    with pytest.raises(ConfigError) as refused:
        algorithm_of(RunConfig.from_mapping(values))
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_users_algorithm_registers_like_the_built_ins(monkeypatch):
    monkeypatch.setattr(ALGORITHMS, "_entries", dict(ALGORITHMS._entries))
    local = ALGORITHMS.get("local")
    mine = ALGORITHMS.register("mine", FederatedAlgorithm(local.client_app, local.server_app, check_baseline))
    assert algorithm_of(RunConfig(algorithm="mine")) is mine
    with pytest.raises(ConfigError, match="algorithm mine runs the static scenario"):
        algorithm_of(RunConfig(algorithm="mine", scenario="continual"))
    with pytest.raises(ConfigError, match=r"registered: relatlas, local, fedavg, fedproto, centralised, mine$"):
        RunConfig(algorithm="theirs")
    assert prototype_weight("fedproto") == 1.0 and prototype_weight("fedproto:0.25") == 0.25


def test_the_htfl_setting_is_htfllibs_with_every_registered_image_encoder():
    config = htfl_config(algorithm="fedproto")
    assert (config.num_clients, config.split, config.alpha, config.dataset) == (20, "dirichlet", 0.1, "fashion-mnist")
    assert [str(EncoderSpec.for_client(config.encoder, p)) for p in range(5)] == ["mlp", "cnn", "resnet8", "resnet20", "mlp"]
    assert algorithm_of(config) is ALGORITHMS.get("fedproto")  # one embedding width: FedProto takes the mixed encoders
    with pytest.raises(ConfigError, match="fedavg averages one architecture"):
        algorithm_of(htfl_config(algorithm="fedavg"))
    assert algorithm_of(htfl_config(algorithm="fedavg", encoder="cnn")) is ALGORITHMS.get("fedavg")


def test_a_reply_whose_algorithm_records_fail_is_dropped_with_the_reason(tmp_path, monkeypatch):
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from relatlas.clients.algorithm_client import ALGORITHM, EMBEDDINGS, LOGITS
    from relatlas.server.algorithm_fedproto import FedProtoServer
    from relatlas.server.algorithm_strategy import AlgorithmStrategy
    from relatlas.server.replies import error_reason
    from relatlas.server.run_setup import RunSetup

    for name in ("_task_id", "_run_id", "_node_id"):  # Flower stamps messages with the running task's identity
        monkeypatch.setattr(TaskIdentity, name, 1)
    config = small_run_config(tmp_path, algorithm="fedproto", **{"eval-samples": 50, "simulation-baselines": False})
    setup = RunSetup.prepare(config)
    strategy = AlgorithmStrategy(config, setup, FedProtoServer(config, setup))
    sent = Message(RecordDict({"task": ConfigRecord({})}), dst_node_id=7, message_type="train")
    scored = {LOGITS: Array(np.zeros((50, 10), np.float32)), EMBEDDINGS: Array(np.zeros((50, 64), np.float32))}
    wrong = scored | {"prototypes": Array(np.zeros((10, 32), np.float32)), "counts": Array(np.ones(10, np.int64))}
    for content, reason in [
        (RecordDict({}), "reply lacks the algorithm's record 'algorithm'"),
        (RecordDict({ALGORITHM: ArrayRecord(wrong)}), "prototypes have shape (10, 32); expected (10, 64)"),
    ]:
        taken = strategy._take_records(Message(content, reply_to=sent), sent)
        assert taken.has_error() and taken.error.reason == f"ReplyError: {reason}" and taken.metadata.src_node_id == 7
        assert error_reason(taken).startswith(f"client failed: ReplyError: {reason[:-1]}")  # how the run records the drop
