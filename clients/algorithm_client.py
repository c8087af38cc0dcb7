"""The ClientApp of the baselines run in relatlas's harness (``--algorithm``).

A client trains as its algorithm's step says, then answers as a relatlas client
does (its relative spaces of the round's samples, so the server scores every
algorithm's clients the same way) plus record ``algorithm``: its model's logits
and embeddings of the samples (``logits`` [N, C], ``embeddings`` [N, d]; the
server scores each client's own model with them) and what the step adds (FedProto's
prototypes). A step may add records of its own (FedAvg's weights, ``arrays``).

Data, model and seeds are those of relatlas's ClientApp (``clients/client_app.py``):
the same run trains the same clients, whatever the algorithm.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from relatlas.benchmarks.sources import loader_workers
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import LocalView
from relatlas.clients.client_app import (
    MODEL_STATE,
    check_fits_samples,
    client_model,
    decode_task,
    local_data,
    model_facts,
    projection_reply,
    public_inputs,
)
from relatlas.clients.handler_scope import in_task_scope
from relatlas.clients.local_test import local_test_accuracy
from relatlas.clients.models import Classifier
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig, derive_seed, predict
from relatlas.registries import ANCHOR_MODES

ALGORITHM, LOGITS, EMBEDDINGS = "algorithm", "logits", "embeddings"

# (model, training inputs, labels, this round's training config, the server's message content, task)
#   -> (metrics, records for the reply): trains ``model`` in place
ClientStep = Callable[
    [Classifier, np.ndarray, np.ndarray, TrainConfig, RecordDict, Task], tuple[dict[str, float], dict[str, ArrayRecord]]
]


def algorithm_client_app(step: ClientStep) -> ClientApp:
    """A ClientApp whose ``train`` runs ``step``, then answers as ``train_with`` says."""
    app = ClientApp()

    @app.train()
    @in_task_scope
    def train(msg: Message, context: Context) -> Message:
        return train_with(step, msg, context)

    return app


def train_with(step: ClientStep, msg: Message, context: Context) -> Message:
    """One round of a baseline client: train with ``step``, keep the model in
    ``context.state``, project the round's samples and add the algorithm's record."""
    task = decode_task(msg)
    dataset, local, held_back = local_data(task, context)
    inputs = public_inputs(msg, task, context, dataset)
    check_fits_samples(dataset, inputs)
    model = client_model(dataset, task, context)
    seed = derive_seed(task.runtime.seed, task.partition_id, task.round)
    train = TrainConfig(
        task.model.epochs, task.model.batch_size, task.model.learning_rate, seed, loader_workers(task.runtime.num_cpus)
    )
    started = time.perf_counter()
    stats, records = step(model, dataset.x_train[local], dataset.y_train[local], train, msg.content, task)
    context.state[MODEL_STATE] = ArrayRecord(model.state_dict())
    if len(held_back):  # the heterogeneous-FL score, as relatlas's clients report it
        stats[protocol.LOCAL_TEST_ACCURACY] = local_test_accuracy(model, dataset.x_train[held_back], dataset.y_train[held_back])
    metrics = MetricRecord(
        {"partition-id": task.partition_id, "num-examples": len(local)}
        | stats
        | {"train-seconds": time.perf_counter() - started}
        | model_facts(model)
    )
    samples = predict(model.embedder, inputs[protocol.SAMPLES].numpy())
    mode = ANCHOR_MODES.get(task.anchors.anchors_mode)
    projected, anchors = mode.projection(LocalView(dataset, local, task, model.embedder), inputs, samples)
    reply = projection_reply(msg, task, projected, samples, anchors, metrics)
    own = records.pop(ALGORITHM, ArrayRecord())
    own[LOGITS] = Array(np.ascontiguousarray(predict(model.head, samples).numpy()))
    own[EMBEDDINGS] = Array(np.ascontiguousarray(samples.numpy()))
    reply.content[ALGORITHM] = own
    for name, record in records.items():
        reply.content[name] = record
    return reply


def train_stats(stats: dict[str, float]) -> dict[str, float]:
    """``fit``'s statistics under the names relatlas's clients report them."""
    return {"train-loss": stats["train_loss"], "train-accuracy": stats["train_accuracy"]}
