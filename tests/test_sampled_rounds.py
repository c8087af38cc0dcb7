"""Sampled rounds (``fraction-train``, ``min-train-nodes``): each round trains a seeded
sample of the clients, the merge and the scores are those of the clients that answered,
a client goes on from the model it last trained, a killed run resumes to the same numbers,
and without sampling a run gives today's numbers (to float tolerance)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from flwr.app import ArrayRecord

from relatlas.clients import protocol
from relatlas.clients.checkpoint import client_state_dir, load_client_state
from relatlas.clients.client_app import MODEL_STATE, decode_task
from relatlas.server.algorithm_fedavg import FedAvgServer, fedavg
from relatlas.server.algorithm_strategy import AlgorithmStrategy
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.federation import run_federation
from relatlas.server.interruption import Interrupted
from relatlas.server.run_setup import RunSetup
from relatlas.server.sampling import sample_nodes
from relatlas.server.strategy import RelativeStrategy
from relatlas.server.tracking import scalar_metrics
from tests.conftest import as_recorded, read_results, small_run_config
from tests.test_atlas import SMALL, TODAY, RecordingGrid
from tests.test_federation import _without_timings

SAMPLED = SMALL | {"num-clients": 5, "fraction-train": 0.4, "rounds": 3, "client-scores": False, "seed": 3}  # 1, 4 skip round 2


class StatefulGrid(RecordingGrid):
    """The recording grid, keeping each client's model as each of its rounds began and ended: the
    state it saved, which a round restores; its context holds none (there it would cost the server)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.models: list[tuple[int, int, dict | None, dict | None]] = []  # (node, round, before, after)

    def answer(self, message):
        context, task = self.contexts[message.metadata.dst_node_id], decode_task(message)
        folder = client_state_dir(context.node_config, task.run_key, task.partition_id)
        before = load_client_state(folder, task.round - 1)
        reply = super().answer(message)
        assert MODEL_STATE not in context.state
        after = load_client_state(folder, task.round)  # none after the last round, which clears it
        self.models.append((message.metadata.dst_node_id, task.round, before and before[0], after and after[0]))
        return reply


class StopsInRound(RecordingGrid):
    """The recording grid, interrupted as round ``stop`` is sent (as a signal would: after a checkpoint)."""

    def __init__(self, stop: int, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stop = stop

    def push_messages(self, messages):
        messages = list(messages)
        if messages and int(messages[0].metadata.group_id) == self.stop:
            raise Interrupted(15)
        return super().push_messages(messages)


def _trained(grid: RecordingGrid, round_number: int) -> list[int]:
    """The nodes sent a ``train`` message in ``round_number``."""
    return sorted(m.metadata.dst_node_id for m in grid.sent if m.metadata.group_id == str(round_number))


def test_each_round_trains_its_seeded_sample_and_scores_those_that_answered(tmp_path):
    grid = StatefulGrid(5, tmp_path / "state")
    config = small_run_config(tmp_path, **SAMPLED)
    results = run_federation(grid, config)
    partitions = {node: node - 101 for node in grid.contexts}  # LocalGrid's ids, in partition order
    for r in results["rounds"]:
        expected = sample_nodes(partitions, 2, config.seed, r["round"])
        assert _trained(grid, r["round"]) == sorted(expected)  # only the sample is asked
        assert r["sampled_partitions"] == r["client_partitions"] == sorted(expected.values())
        assert r["clients_answered"] == len(r["client_outlier_score"]) == len(r["client_num_examples"]) == 2
        assert not any(key.startswith("sampled_partitions") for key in scalar_metrics(r))
    samples = [tuple(r["sampled_partitions"]) for r in results["rounds"]]
    assert len(set(samples)) > 1  # the sample changes from round to round
    # a client goes on from the model it last trained, across the rounds it was not sampled in
    last: dict[int, tuple[int, dict]] = {}
    gaps = 0
    for node, round_number, before, after in grid.models:
        if node in last:
            gaps += round_number - last[node][0] > 1
            assert before is not None and all(torch.equal(before[k], last[node][1][k]) for k in before)
        else:
            assert before is None
        last[node] = (round_number, after)
    assert gaps  # the run has a client that skipped a round and continued


def test_the_sample_depends_on_the_seed_and_round_only():
    partitions = {node: node - 101 for node in range(101, 121)}
    shuffled = dict(reversed(partitions.items()))
    assert sample_nodes(partitions, 5, 7, 3) == sample_nodes(shuffled, 5, 7, 3)  # not on the nodes' order
    draws = {tuple(sample_nodes(partitions, 5, seed, r)) for seed in (0, 1) for r in (1, 2)}
    assert len(draws) == 4 and all(len(d) == 5 for d in draws)
    assert sample_nodes(partitions, 20, 0, 1) == partitions  # all of them: nothing drawn


def test_a_sampled_run_killed_and_resumed_equals_an_uninterrupted_one(tmp_path):
    whole = small_run_config(tmp_path / "whole", **SAMPLED)
    run_federation(RecordingGrid(5, tmp_path / "whole-state"), whole)
    killed = small_run_config(tmp_path / "killed", **SAMPLED)
    with pytest.raises(Interrupted):
        run_federation(StopsInRound(3, 5, tmp_path / "killed-state"), killed)
    assert len(read_results(killed)["rounds"]) == 2
    resumed = dataclasses.replace(killed, resume=killed.out_dir)
    grid = RecordingGrid(5, tmp_path / "killed-state")  # new contexts: the clients load their saved state
    run_federation(grid, resumed)
    assert len(_trained(grid, 3)) == 2 and not _trained(grid, 1)
    assert _without_timings(read_results(resumed))["rounds"] == _without_timings(read_results(whole))["rounds"]


def test_without_sampling_a_run_gives_todays_numbers(tmp_path):
    grid = RecordingGrid(3, tmp_path / "state")
    results = run_federation(grid, small_run_config(tmp_path, **SMALL | {"fraction-train": 1.0, "min-train-nodes": 3}))
    assert [{key: r[key] for key in TODAY[0]} for r in results["rounds"]] == as_recorded(TODAY)
    assert all("sampled_partitions" not in r for r in results["rounds"])
    assert _trained(grid, 1) == _trained(grid, 2) == [101, 102, 103]


def test_flowers_own_loop_asks_only_the_sample_in_both_phases_of_a_round(tmp_path):
    config = small_run_config(tmp_path, **SAMPLED | {"num-clients": 4, "fraction-train": 0.5, "anchors-mode": "bootstrapped",
                                                     "seed-anchors": 4, "rounds": 2})  # fmt: skip
    grid = RecordingGrid(4, tmp_path / "state")
    strategy = RelativeStrategy(config)
    strategy.start(grid, ArrayRecord(), num_rounds=2, timeout=10.0)
    partitions = {node: node - 101 for node in grid.contexts}
    for r in strategy.rounds:
        sample = sample_nodes(partitions, 2, config.seed, r["round"])
        asked = [m for m in grid.sent if m.metadata.group_id == str(r["round"])]
        assert {m.metadata.message_type for m in asked} == {protocol.TRAIN, protocol.QUERY}
        assert {m.metadata.dst_node_id for m in asked} == set(sample)
        assert r["sampled_partitions"] == r["client_partitions"] == sorted(sample.values())


def test_the_fedavg_baseline_trains_the_same_sample(tmp_path):
    config = small_run_config(tmp_path, **SAMPLED | {"algorithm": "fedavg", "rounds": 2})
    setup = RunSetup.prepare(config)
    grid = RecordingGrid(5, tmp_path / "state", fedavg.client_app)
    results = run_federation(grid, config, AlgorithmStrategy(config, setup, FedAvgServer(config, setup)))
    partitions = {node: node - 101 for node in grid.contexts}
    for r in results["rounds"]:
        sample = sample_nodes(partitions, 2, config.seed, r["round"])
        assert _trained(grid, r["round"]) == sorted(sample) and r["client_partitions"] == sorted(sample.values())
        assert len(r["client_model_accuracy"]) == 2 and 0 <= r["global_accuracy"] <= 1
    assert all(protocol.TASK in m.content for m in grid.sent)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fraction-train": 0.0}, "fraction-train must be in (0, 1]"),
        ({"fraction-train": 1.5}, "fraction-train must be in (0, 1]"),
        ({"min-train-nodes": -1}, "min-train-nodes must be zero or more"),
        ({"min-train-nodes": 4}, "min-train-nodes (4) cannot exceed num-clients (3)"),
        ({"num-clients": 10, "fraction-train": 0.1}, "trains 1 a round, below min-clients (2)"),
        ({"fraction-train": 0.7, "scenario": "continual"}, "a continual client learns every experience"),
        ({"num-clients": 10, "fraction-train": 0.3, "aggregation": "krum", "max-hostile": 1}, "max-hostile 1 is 1 of 3 clients"),
    ],
)
def test_bad_sampling_values_are_refused_in_one_line(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        RunConfig.from_mapping(values)
    assert "\n" not in str(err.value)


def test_the_clients_per_round_follow_flowers_rule():
    config = RunConfig.from_mapping({"num-clients": 100, "fraction-train": 0.29, "min-clients": 2})
    assert config.clients_per_round() == 29 and config.clients_per_round(10) == 2
    floor = RunConfig.from_mapping({"num-clients": 100, "fraction-train": 0.01, "min-train-nodes": 5})
    assert floor.clients_per_round() == 5 and floor.clients_per_round(3) == 3
