"""The task a ClientApp decodes: one typed object, checked, the same the server built."""

from __future__ import annotations

import pytest
from flwr.app import ConfigRecord

from relatlas.clients.task import Task
from relatlas.section_base import ConfigError
from relatlas.server.config import RunConfig

FACTS = {"round": 2, "partition_id": 1, "similarities": ("cosine", "euclidean"), "send_absolute": False,
         "run_key": "ab12", "keep_state": True}  # fmt: skip


def _record(config: RunConfig, **anchoring) -> ConfigRecord:
    return ConfigRecord(Task.of(config, **FACTS, anchoring=anchoring).to_record())


def test_the_task_a_client_decodes_is_the_one_the_server_built():
    config = RunConfig(anchors_mode="class-matched", encoder="mlp,mlp:dim=16", epochs=2, payload="topk:8", seed=7)
    task = Task.of(config, **FACTS, anchoring={"anchor-classes": [0, 1, 2]})
    decoded = Task.from_record(ConfigRecord(task.to_record()))
    assert decoded == task
    assert (decoded.model.encoder, decoded.model.epochs, decoded.merge.payload, decoded.runtime.seed) == (
        "mlp,mlp:dim=16",
        2,
        "topk:8",
        7,
    )
    assert decoded.similarities == ("cosine", "euclidean") and decoded.anchoring["anchor-classes"] == [0, 1, 2]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"epochs": "3"}, r"^epochs must be int; got '3'$"),
        ({"anchors-mode": "nearby"}, r"^anchors-mode must be one of shared, .*; got 'nearby'$"),
        ({"similarities": [1]}, r"^similarities must be a list of str; got \[1\]$"),
        ({"anchor-indices": [0, 1]}, r"^task has unknown keys \['anchor-indices'\]; anchors-mode shared adds \[\]$"),
        ({"encoder": "mlp:width=-"}, r"^encoder: "),
    ],
)
def test_a_malformed_task_is_refused_in_one_line(change, reason):
    record = dict(_record(RunConfig())) | change
    with pytest.raises(ConfigError, match=reason):
        Task.from_record(record)


def test_a_task_without_a_round_fact_is_refused():
    record = dict(_record(RunConfig()))
    del record["partition-id"]
    with pytest.raises(ConfigError, match=r"^task lacks key 'partition-id'$"):
        Task.from_record(record)


def test_a_task_without_a_section_key_is_refused_not_defaulted():
    record = dict(_record(RunConfig(epochs=5)))
    del record["epochs"]
    with pytest.raises(ConfigError, match=r"^task lacks key 'epochs'$"):
        Task.from_record(record)


def test_only_the_entries_the_run_s_anchor_mode_declares_are_accepted():
    record = _record(RunConfig(anchors_mode="bootstrapped", min_clients=2), **{"anchor-classes": [0], "anchor-indices": [3]})
    assert Task.from_record(record).anchoring == {"anchor-classes": [0], "anchor-indices": [3]}
