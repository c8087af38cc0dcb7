"""The Flower ClientApp: train the local embedder, answer with relative
representations of the samples the server asks about.

Model weights survive between rounds in ``context.state`` (each message may
start a fresh process in deployment); the data never leaves the client.
"""

from __future__ import annotations

import time

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from aggregation.projection import relative_subspaces
from benchmarks.datasets import load_dataset
from benchmarks.splits import plan_for_task
from clients import protocol
from clients.models import build_classifier
from clients.training import TrainConfig, derive_seed, fit, predict

MODEL_STATE = "model"

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train for ``epochs`` more epochs, then project the server's samples on its anchors."""
    task: ConfigRecord = msg.content[protocol.TASK]
    partition = int(context.node_config["partition-id"])
    dataset = load_dataset(str(task["dataset"]), str(task["data-root"]) or None, int(task["seed"]))
    plan = plan_for_task(dataset.y_train, task)
    if not 0 <= partition < len(plan.client_indices):
        raise ValueError(f"partition-id {partition} is outside the {len(plan.client_indices)} clients of this run")
    local = plan.client_indices[partition]

    model = build_classifier(
        dataset.input_shape,
        dataset.num_classes,
        embedding_dim=int(task["embedding-dim"]),
        encoder=str(task["encoder"]),
        seed=derive_seed(int(task["seed"]), partition),
    )
    if MODEL_STATE in context.state:
        model.load_state_dict(context.state[MODEL_STATE].to_torch_state_dict())
    round_number = int(task["round"])
    config = TrainConfig(
        epochs=int(task["epochs"]),
        batch_size=int(task["batch-size"]),
        learning_rate=float(task["learning-rate"]),
        seed=derive_seed(int(task["seed"]), partition, round_number),
    )
    started = time.perf_counter()
    stats = fit(model, dataset.x_train[local], dataset.y_train[local], config)
    seconds = time.perf_counter() - started
    context.state[MODEL_STATE] = ArrayRecord(model.state_dict())

    inputs: ArrayRecord = msg.content[protocol.INPUTS]
    anchors = predict(model.embedder, inputs[protocol.ANCHORS].numpy())
    samples = predict(model.embedder, inputs[protocol.SAMPLES].numpy())
    spaces = relative_subspaces(samples, anchors, tuple(task["similarities"]))
    content = RecordDict(
        {
            protocol.RELATIVE: ArrayRecord({name: Array(space.numpy()) for name, space in spaces.items()}),
            protocol.METRICS: MetricRecord(
                {
                    "partition-id": partition,
                    "num-examples": len(local),
                    "train-loss": stats["train_loss"],
                    "train-accuracy": stats["train_accuracy"],
                    "train-seconds": seconds,
                }
            ),
        }
    )
    if bool(task["send-absolute"]):
        content[protocol.ABSOLUTE] = ArrayRecord({protocol.SAMPLES: Array(np.ascontiguousarray(samples.numpy()))})
    return Message(content, reply_to=msg)
