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
from benchmarks.rehearsal import restore_buffer, save_buffer
from benchmarks.splits import plan_for_task
from benchmarks.streams import DatasetRef, class_schedule, client_stream
from clients import protocol
from clients.continual import ContinualConfig, build_strategy, train_experience
from clients.models import Classifier, build_classifier
from clients.training import TrainConfig, derive_seed, fit, predict

MODEL_STATE, BUFFER_STATE = "model", "replay-buffer"

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train (``epochs`` more epochs, or the round's experience), then project the
    server's samples on its anchors."""
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
    seed = derive_seed(int(task["seed"]), partition, int(task["round"]))
    if task["scenario"] == "continual":
        metrics = _train_continual(model, task, local, context, seed)
    else:
        metrics = _train_static(model, task, dataset.x_train[local], dataset.y_train[local], seed)
    context.state[MODEL_STATE] = ArrayRecord(model.state_dict())

    inputs: ArrayRecord = msg.content[protocol.INPUTS]
    anchors = predict(model.embedder, inputs[protocol.ANCHORS].numpy())
    samples = predict(model.embedder, inputs[protocol.SAMPLES].numpy())
    spaces = relative_subspaces(samples, anchors, tuple(task["similarities"]))
    content = RecordDict(
        {
            protocol.RELATIVE: ArrayRecord({name: Array(space.numpy()) for name, space in spaces.items()}),
            protocol.METRICS: MetricRecord({"partition-id": partition} | metrics),
        }
    )
    if bool(task["send-absolute"]):
        content[protocol.ABSOLUTE] = ArrayRecord({protocol.SAMPLES: Array(np.ascontiguousarray(samples.numpy()))})
    return Message(content, reply_to=msg)


def _train_static(model: Classifier, task: ConfigRecord, x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """``epochs`` more epochs on all local data."""
    config = TrainConfig(
        epochs=int(task["epochs"]), batch_size=int(task["batch-size"]), learning_rate=float(task["learning-rate"]), seed=seed
    )
    started = time.perf_counter()
    stats = fit(model, x, y, config)
    return {
        "num-examples": len(x),
        "train-loss": stats["train_loss"],
        "train-accuracy": stats["train_accuracy"],
        "train-seconds": time.perf_counter() - started,
    }


def _train_continual(model: Classifier, task: ConfigRecord, local: np.ndarray, context: Context, seed: int) -> dict:
    """Round r trains on experience r - 1 of this client's stream with the Avalanche
    strategy, its replay buffer carried over in ``context.state``."""
    config = ContinualConfig.from_mapping(task)
    stream = str(task["stream"])
    ref = DatasetRef(str(task["dataset"]), str(task["data-root"]), int(task["seed"]))
    schedule = class_schedule(ref.load().num_classes, int(task["experiences"]), stream, int(task["seed"]))
    benchmark = client_stream(ref, local, schedule, stream, int(task["seed"]))
    strategy = build_strategy(model, config)
    if BUFFER_STATE in context.state:
        restore_buffer(strategy, bytes(context.state[BUFFER_STATE]["buffer"]))
    index = int(task["round"]) - 1
    result = train_experience(strategy, benchmark, index, seed)
    context.state[BUFFER_STATE] = ConfigRecord({"buffer": save_buffer(strategy)})
    seen = sum(len(benchmark.train_stream[j].dataset) for j in range(index + 1))
    avalanche = {protocol.AVALANCHE_PREFIX + name: value for name, value in result.avalanche_metrics.items()}
    return {"num-examples": seen, "train-seconds": result.train_seconds, protocol.HEAD_ACCURACY: result.head_accuracy} | avalanche
