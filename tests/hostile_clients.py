"""Real ClientApps whose replies are well-formed but hostile, for the attack tests:
``hostile_app({partition: attack})`` answers like relatlas's own client, then
tampers with the reply of each listed partition as ``ATTACKS[attack]`` does."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord
from flwr.clientapp import ClientApp

from relatlas.clients import protocol
from relatlas.clients.client_app import train as honest_train


def _cosine(reply: Message) -> np.ndarray:
    return reply.content[protocol.RELATIVE]["cosine"].numpy()


def _set_cosine(reply: Message, values: np.ndarray) -> None:
    reply.content[protocol.RELATIVE] = ArrayRecord({"cosine": Array(np.ascontiguousarray(values))})


def _set_metric(reply: Message, name: str, value) -> None:
    metrics = dict(reply.content[protocol.METRICS])
    reply.content[protocol.METRICS] = MetricRecord(metrics | {name: value})


def _huge_float64(reply: Message) -> None:
    values = _cosine(reply).astype(np.float64)
    values[0, 0] = 1e300  # finite in float64, infinite in float32
    _set_cosine(reply, values)


def _huge_float32(reply: Message) -> None:
    _set_cosine(reply, np.full_like(_cosine(reply), 3e38))


def _scaled(reply: Message) -> None:
    _set_cosine(reply, _cosine(reply) * 1000)


def _uniform(reply: Message) -> None:
    values = _cosine(reply)
    _set_cosine(reply, np.random.default_rng(0).uniform(-1, 1, values.shape).astype(np.float32))


ATTACKS: dict[str, Callable[[Message], None]] = {
    "float64-1e300": _huge_float64,
    "float32-3e38": _huge_float32,
    "scaled-x1000": _scaled,
    "uniform-random": _uniform,
    "num-examples-1e15": lambda reply: _set_metric(reply, "num-examples", 1e15),
    "metrics-list-1e6": lambda reply: _set_metric(reply, "padding", [0.5] * 1_000_000),
    "train-seconds-inf": lambda reply: _set_metric(reply, "train-seconds", float("inf")),
    "metric-name-600": lambda reply: _set_metric(reply, "m" * 600, 1.0),
    "claims-partition-0": lambda reply: [
        _set_metric(reply, key, 0 if key == "partition-id" else 1) for key in ("partition-id", "num-examples")
    ],
}


def hostile_app(attacks: Mapping[int, str]) -> ClientApp:
    """A ClientApp on which partition p runs ``attacks[p]``, the others are honest."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        reply = honest_train(msg, context)
        attack = attacks.get(int(msg.content[protocol.TASK]["partition-id"]))
        if attack is not None:
            ATTACKS[attack](reply)
        return reply

    return app


def absent_app(partition: int, rounds: set[int]) -> ClientApp:
    """A ClientApp on which ``partition`` fails in ``rounds``: a client that misses rounds."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        task = msg.content[protocol.TASK]
        if int(task["partition-id"]) == partition and int(task["round"]) in rounds:
            raise RuntimeError(f"partition {partition} is away in round {task['round']}")
        return honest_train(msg, context)

    return app
