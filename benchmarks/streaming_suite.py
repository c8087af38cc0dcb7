"""The server's peak memory merging one round of many clients' replies, streamed or in a batch::

    python -m relatlas.benchmarks.streaming_suite streamed|batch [clients]

Fashion-MNIST, 1,000 evaluation samples, the default anchors, ``mean``, ``client-scores`` false. The replies
are made-up honest cosines (a shared space plus noise 0.05), built as real Flower Messages and validated as
any reply is; no client trains, so the figure is the merge's alone. ``streamed`` hands ``aggregate_train``
a generator of them, as relatlas's loop pulls them; ``batch`` every one in a list first, merged all at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from relatlas.benchmarks.memory import peak_memory_added
from relatlas.clients import protocol
from relatlas.server.config import RunConfig
from relatlas.server.strategy import RelativeStrategy

FIRST_NODE = 1000


def made_up_replies(strategy: RelativeStrategy, clients: int) -> Iterator[Message]:
    """One valid reply Message per partition, made one at a time."""
    expected = strategy.setup.expected
    shape = (expected.num_samples, expected.num_anchors)
    shared = torch.rand(shape, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    for p in range(clients):
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(p + 1))
        request = Message(RecordDict({protocol.TASK: ConfigRecord({"round": 1})}), dst_node_id=FIRST_NODE + p,
                          message_type=protocol.TRAIN)  # fmt: skip
        content = {
            protocol.RELATIVE: ArrayRecord({"cosine": Array((shared + 0.05 * noise).clamp(-1, 1).numpy())}),
            protocol.METRICS: MetricRecord({"partition-id": p, "num-examples": expected.partition_sizes[p]}),
        }
        yield Message(RecordDict(content), reply_to=request)


def main(mode: str, clients: int = 200) -> None:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1  # as Flower's ServerApp runtime sets them
    options = {"dataset": "fashion-mnist", "num-clients": clients, "min-clients": clients, "eval-samples": 1000}
    options |= {"split": "same-classes", "client-scores": False, "simulation-baselines": False, "probe-epochs": 5}
    sees_replies = (lambda replies, round_number: None) if mode == "batch" else None  # a hook given every reply: batch
    strategy = RelativeStrategy(RunConfig.from_mapping(options), on_valid_replies=sees_replies)
    strategy.partitions = strategy.sampled = {FIRST_NODE + p: p for p in range(clients)}
    started = time.perf_counter()
    replies = made_up_replies(strategy, clients)
    peak = peak_memory_added(lambda: strategy.aggregate_train(1, replies if mode == "streamed" else list(replies)))
    metrics = strategy.outcome.metrics
    print(
        f"{mode}: {clients} clients, peak added {peak / 2**20:.0f} MiB, {time.perf_counter() - started:.0f} s, "
        f"merged_accuracy {metrics['merged_accuracy']:.4f}, merge_streamed {metrics['merge_streamed']}"
    )


if __name__ == "__main__":
    main(sys.argv[1], *(int(n) for n in sys.argv[2:3]))
