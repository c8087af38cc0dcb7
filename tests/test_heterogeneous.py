"""A federation whose clients train different encoders of different widths."""

from __future__ import annotations

import pytest
from flwr.app import Context, RecordDict

from relatlas.clients.client_app import client_encoder
from relatlas.clients.task import Task
from relatlas.server.config import RunConfig
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config

ENCODERS = "mlp,mlp:hidden=64:dim=32,mlp:hidden=128:dim=16"  # digits are flat 8x8: MLPs of three shapes


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("mode", ["shared", "translated"])
def test_clients_of_different_encoders_and_widths_merge(tmp_path, mode):
    config = small_run_config(tmp_path, **{"encoder": ENCODERS, "anchors-mode": mode, "seed-anchors": 8})
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert results["client_embedding_dim"] == [64, 32, 16]
    assert all(type(n) is int for n in results["client_embedding_dim"] + results["client_encoder_parameters"])
    assert results["client_encoder_parameters"] == [
        64 * 256 + 256 + 256 * 64 + 64,
        64 * 64 + 64 + 64 * 32 + 32,
        64 * 128 + 128 + 128 * 16 + 16,
    ]
    assert 0.5 < results["merged_accuracy"] <= 1.0 and all(0.3 < a <= 1.0 for a in results["client_accuracy"])
    assert 0.5 < results["concat_absolute_accuracy"] <= 1.0  # absolute baselines concatenate the three widths


def test_a_supernode_node_config_overrides_the_run_list():
    facts = {"round": 1, "similarities": ("cosine",), "send_absolute": False, "run_key": "ab", "keep_state": False}
    task = Task.of(RunConfig(encoder="mlp,cnn"), partition_id=3, **facts)

    def context(node_config):
        return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})

    assert str(client_encoder(task, context({}))) == "cnn"
    assert str(client_encoder(task, context({"encoder": "resnet8:dim=32"}))) == "resnet8:dim=32"
