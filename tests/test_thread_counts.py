"""The torch thread count changes float sums: a client's handler runs on its ``num-cpus`` threads and
gives the process its own count back, and the centralised reference pins its count, so the same seed
gives the same numbers whatever ran before in the process (in-process clients, an earlier test)."""

from __future__ import annotations

import pytest
import torch
from flwr.app import ConfigRecord, Message, RecordDict

from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.splits import plan_for
from relatlas.clients import protocol
from relatlas.clients.handler_scope import in_task_scope
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig
from relatlas.server.centralized import CentralizedReference
from relatlas.server.config import RunConfig
from tests.test_gpu_paths import FACTS


@pytest.fixture
def process_threads():
    """Set the process's torch thread count in a test; restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.usefixtures("flower_task_identity")
def test_a_handler_runs_on_its_tasks_cpus_and_gives_the_process_its_count_back(process_threads):
    process_threads(2)
    seen = []
    handled = in_task_scope(lambda msg, context: seen.append(torch.get_num_threads()) or msg)
    record = ConfigRecord(Task.of(RunConfig(num_cpus=1.0), **FACTS).to_record())
    handled(Message(RecordDict({protocol.TASK: record}), dst_node_id=7, message_type=protocol.TRAIN), None)
    assert seen == [1] and torch.get_num_threads() == 2


def test_the_centralised_reference_gives_the_same_numbers_whatever_thread_count_the_process_has(process_threads):
    """An in-process client leaves the process on its own thread count; the reference pins its own
    (unpinned, a run killed and resumed in another process differed in the 8th digit of a score)."""
    data, config = load_dataset("digits"), RunConfig()
    plan = plan_for(data.y_train, config, config, 0)

    def spaces(threads: int) -> torch.Tensor:
        process_threads(threads)
        central = CentralizedReference(data, plan, embedding_dim=64, encoder="mlp", train=TrainConfig(epochs=2), threads=2)
        central.train_round(1)
        return central.spaces(data.x_train[plan.anchor_indices], data.x_test, ("cosine",))["cosine"]

    assert torch.equal(spaces(1), spaces(2))
    assert torch.get_num_threads() == 2  # the process's count, restored
