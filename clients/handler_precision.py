"""A ClientApp handler run in the precision its message's task names (``--precision``)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from flwr.app import Context, Message

from relatlas.clients import protocol
from relatlas.clients.precision import precision_scope
from relatlas.clients.task import Task
from relatlas.clients.training import device_for_worker

Handler = Callable[[Message, Context], Message]


def in_task_precision(handler: Handler) -> Handler:
    """``handler`` under ``precision_scope`` of its task's precision on this worker's device:
    TF32 for every matrix product it makes, bf16 for its models' forward passes (``clients/precision.py``)."""

    @functools.wraps(handler)
    def run(msg: Message, context: Context) -> Message:
        task = Task.from_record(msg.content[protocol.TASK])
        with precision_scope(task.model.precision, device_for_worker()):
            return handler(msg, context)

    return run
