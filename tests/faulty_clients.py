"""A real ClientApp that misbehaves on purpose, by partition, for fault tests.

Partition 1 raises, 2 sends NaN, 3 sends the wrong shape, 5 the wrong keys,
6 integers, 7 an oversized array, and 8 answers only after ``SLOW_SECONDS``;
the others answer like relatlas's own client. In two-phase anchor modes,
partition 2's NaN is in its first (anchoring) reply and partition 3's wrong
shape in its second.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message
from flwr.clientapp import ClientApp

from relatlas.clients import protocol
from relatlas.clients.client_app import query as honest_query
from relatlas.clients.client_app import train as honest_train

SLOW_SECONDS = 60.0

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    partition = int(msg.content[protocol.TASK]["partition-id"])
    if partition == 1:
        raise RuntimeError("simulated crash on partition 1")
    if partition == 8:
        time.sleep(SLOW_SECONDS)
    reply = honest_train(msg, context)
    if protocol.ANCHORING in reply.content:
        if partition == 2:
            nan = {k: Array(np.full_like(v.numpy(), np.nan)) for k, v in reply.content[protocol.ANCHORING].items()}
            reply.content[protocol.ANCHORING] = ArrayRecord(nan)
        return reply
    return _garbled(reply, partition)


@app.query()
def query(msg: Message, context: Context) -> Message:
    return _garbled(honest_query(msg, context), int(msg.content[protocol.TASK]["partition-id"]))


def _garbled(reply: Message, partition: int) -> Message:
    cosine = reply.content[protocol.RELATIVE]["cosine"].numpy()
    if partition == 2:
        reply.content[protocol.RELATIVE] = ArrayRecord({"cosine": Array(np.full_like(cosine, np.nan))})
    elif partition == 3:
        reply.content[protocol.RELATIVE] = ArrayRecord({"cosine": Array(cosine[:, :-1].copy())})
    elif partition == 5:
        reply.content[protocol.RELATIVE] = ArrayRecord({"cosinus": Array(cosine)})
    elif partition == 6:
        reply.content[protocol.RELATIVE] = ArrayRecord({"cosine": Array(cosine.astype(np.int64))})
    elif partition == 7:
        reply.content[protocol.RELATIVE] = ArrayRecord({"cosine": Array(np.tile(cosine, (4, 4)))})
    return reply
