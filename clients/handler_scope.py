"""A ClientApp handler run in its task's scope: the torch threads of its ``num-cpus`` and
the precision its task names (``--precision``), both restored when it returns."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flwr.app import Context, Message

from relatlas.clients import protocol
from relatlas.clients.precision import precision_scope
from relatlas.clients.task import Task
from relatlas.clients.training import client_threads, device_for_worker, torch_threads

Handler = Callable[[Message, Context], Message]


def in_task_scope(handler: Handler) -> Handler:
    """``handler`` on ``num-cpus`` torch threads, on either engine (the thread count changes float
    sums, so a deployed client computes what a simulated one does), and under ``precision_scope`` of
    its task's precision on this worker's device: TF32 for every matrix product it makes, bf16 for
    its models' forward passes (``clients/precision.py``). The process's thread count is restored
    after, so an in-process client does not change what the server computes beside it."""

    @functools.wraps(handler)
    def run(msg: Message, context: Context) -> Message:
        task = Task.from_record(msg.content[protocol.TASK])
        with torch_threads(client_threads(task.runtime.num_cpus)), precision_scope(task.model.precision, device_for_worker()):
            return handler(msg, context)

    return run
