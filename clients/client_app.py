"""The Flower ClientApp: train the local embedder, answer with relative
representations of the samples the server asks about.

Model weights survive between rounds in the client's state folder
(``clients/checkpoint.py``; each message may start a fresh process in deployment),
not in ``context.state``: Flower's simulation engine keeps every node's Context in
the server's process, where weights would cost 0.87 MB (the MLP) per client ever
trained. ``context.state`` holds them only from a two-phase mode's ``train`` to its
``query``. The data never leaves the client. With
two-phase anchor modes the ``train`` reply carries what the server needs to pair
anchors across clients, and a ``query`` message then asks for the projection
(see ``clients/anchor_modes.py`` and ``clients/protocol.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import Tensor

from relatlas.aggregation.projection import relative_subspaces
from relatlas.benchmarks.datasets import Dataset, load_dataset
from relatlas.benchmarks.own_data import load_own_data, own_data_spec
from relatlas.benchmarks.sources import loader_workers
from relatlas.benchmarks.splits import plan_for
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import LocalView
from relatlas.clients.atlas_feedback import AtlasAlignment, atlas_alignment, public_relative
from relatlas.clients.checkpoint import clear_client_state, client_state_dir, load_client_state, save_client_state, state_root
from relatlas.clients.frozen_backbone import cache_frozen_features
from relatlas.clients.handler_scope import in_task_scope
from relatlas.clients.local_test import held_back_split, local_test_accuracy
from relatlas.clients.models import Classifier, build_classifier, parameter_count
from relatlas.clients.payload import add_gaussian_noise, payload_codec
from relatlas.clients.public_inputs import CACHE_FOLDER, received_inputs
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig, derive_seed, fit, predict
from relatlas.encoder_spec import EncoderSpec
from relatlas.library_noise import quiet_actor_shutdown, quiet_library_noise
from relatlas.registries import ANCHOR_MODES
from relatlas.sections import NODE_DATA_KEY

MODEL_STATE, BUFFER_STATE, METRICS_STATE = "model", "replay-buffer", "train-metrics"
NOISE_STREAM = 20_000  # seed stream of the payload noise, apart from training's

quiet_actor_shutdown()  # a simulation's actors import this module; Flower's shutdown line is not the user's business

app = ClientApp()


# (a client's training labels, the number of classes) -> the labels it trains on
Relabel = Callable[[np.ndarray, int], np.ndarray]


@app.train()
@in_task_scope
def train(msg: Message, context: Context) -> Message:
    """Train (``epochs`` more epochs, or the round's experience), then project the
    server's samples, or send what pairs anchors across clients (two-phase modes)."""
    return train_relabelled(msg, context, None)


def train_relabelled(msg: Message, context: Context, relabel: Relabel | None) -> Message:
    """``train``, the static scenario's training labels passed through ``relabel``
    first: a label-flipping client of the attack benchmark is otherwise honest."""
    task = decode_task(msg)
    dataset, local, held_back = local_data(task, context)
    inputs = public_inputs(msg, task, context, dataset)
    check_fits_samples(dataset, inputs)
    _restore_if_resumed(task, context)
    model = client_model(dataset, task, context)
    cache_frozen_features(model, dataset.x_train[local], _state_dir(task, context))  # a frozen backbone's, once per run
    seed = derive_seed(task.runtime.seed, task.partition_id, task.round)
    if task.continual.scenario == "continual":
        if relabel is not None:
            raise ValueError("relabelled training is for the static scenario; continual clients train on their stream")
        metrics = _train_continual(model, task, local, context, seed)
    else:
        labels = dataset.y_train[local] if relabel is None else relabel(dataset.y_train[local], dataset.num_classes)
        alignment = atlas_alignment(msg.content, inputs, task, model, dataset, seed)  # checked before any step
        metrics = _train_static(model, task, dataset.x_train[local], labels, seed, alignment)
        if len(held_back):  # scored on its true labels: the client's own model, as its user would test it
            x_test, y_test = dataset.x_train[held_back], dataset.y_train[held_back]
            metrics[protocol.LOCAL_TEST_ACCURACY] = local_test_accuracy(model, x_test, y_test)
    context.state.pop(MODEL_STATE, None)  # a resumed round's, restored from the state folder
    if task.keep_state:
        buffer = context.state[BUFFER_STATE].to_torch_state_dict() if BUFFER_STATE in context.state else None
        save_client_state(_state_dir(task, context), task.round, model.state_dict(), buffer)
    else:  # the run's last round: nothing will resume from it
        clear_client_state(_state_dir(task, context))
    metrics = MetricRecord({"partition-id": task.partition_id} | metrics | model_facts(model))

    mode = ANCHOR_MODES.get(task.anchors.anchors_mode)
    local_view = LocalView(dataset, local, task, model.embedder)
    anchoring = mode.first_phase(local_view, inputs)
    if anchoring is not None:  # the round's query projects with this model
        context.state[MODEL_STATE] = ArrayRecord(model.state_dict())
        context.state[METRICS_STATE] = metrics
        record = ArrayRecord({name: Array(np.ascontiguousarray(a.numpy())) for name, a in anchoring.items()})
        return Message(RecordDict({protocol.METRICS: metrics, protocol.ANCHORING: record}), reply_to=msg)
    samples = predict(model.embedder, inputs[protocol.SAMPLES].numpy())
    projected, anchors = mode.projection(local_view, inputs, samples)
    public = public_relative(task, model.embedder, dataset, anchors) if task.model.atlas_weight else None
    return projection_reply(msg, task, projected, samples, anchors, metrics, public)


@app.query()
@in_task_scope
def query(msg: Message, context: Context) -> Message:
    """Second phase of a two-phase anchor mode: project on the anchors the server
    paired, with the model trained in this round's ``train``."""
    task = decode_task(msg)
    if MODEL_STATE not in context.state or METRICS_STATE not in context.state:
        raise RuntimeError("query before train: this client has no model trained in this run")
    dataset, local, _ = local_data(task, context)
    model = client_model(dataset, task, context)
    inputs = public_inputs(msg, task, context, dataset)
    samples = predict(model.embedder, inputs[protocol.SAMPLES].numpy())
    mode = ANCHOR_MODES.get(task.anchors.anchors_mode)
    projected, anchors = mode.projection(LocalView(dataset, local, task, model.embedder), inputs, samples)
    metrics = context.state.pop(METRICS_STATE)
    del context.state[MODEL_STATE]  # the next round reads the state folder
    return projection_reply(msg, task, projected, samples, anchors, metrics)


def decode_task(msg: Message) -> Task:
    """The message's task (``Task.from_record`` imports the run's plug-ins first)."""
    record: ConfigRecord = msg.content[protocol.TASK]
    return Task.from_record(record)


def public_inputs(msg: Message, task: Task, context: Context, dataset: Dataset) -> ArrayRecord:
    """The message's inputs, those named by digest taken from the cache or from ``dataset``
    where it is the run's own (a client bringing its own data holds no copy of it)."""
    own = own_data_spec(task.data.client_data, str(context.node_config.get(NODE_DATA_KEY, "")), task.partition_id)
    cache = state_root(context.node_config) / CACHE_FOLDER
    return received_inputs(msg.content, cache, dataset if own is None else None)


def _state_dir(task: Task, context: Context) -> Path:
    return client_state_dir(context.node_config, task.run_key, task.partition_id)


def _restore_if_resumed(task: Task, context: Context) -> None:
    """A round after the first with nothing in ``context.state`` belongs to a
    resumed run: load the latest state this client saved before this round."""
    if task.round == 1 or MODEL_STATE in context.state:
        return
    saved = load_client_state(_state_dir(task, context), task.round - 1)
    if saved is None:
        return
    model, buffer = saved
    context.state[MODEL_STATE] = ArrayRecord(model)
    if buffer is not None:
        context.state[BUFFER_STATE] = ArrayRecord(buffer)


def local_data(task: Task, context: Context) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """The dataset, the rows of its training set this client trains on, and those it holds
    back to score its own model (``local-test-fraction``, ``clients/local_test.py``)."""
    dataset, rows = _client_rows(task, context)
    fraction, seed = task.data.local_test_fraction, task.runtime.seed
    train, held_back = held_back_split(rows, dataset.y_train[rows], fraction, seed, task.partition_id)
    return dataset, train, held_back


def _client_rows(task: Task, context: Context) -> tuple[Dataset, np.ndarray]:
    """The dataset and this client's rows of its training set: all of its own data where the
    run gives it some (``benchmarks/own_data.py``), else its partition of the run's dataset."""
    own = own_data_spec(task.data.client_data, str(context.node_config.get(NODE_DATA_KEY, "")), task.partition_id)
    if own is not None:
        dataset = load_own_data(own, task.data.data_root or None, task.runtime.seed, tuple(task.data.class_names.split(",")))
        return dataset, np.arange(len(dataset.y_train))
    dataset = load_dataset(task.data.dataset, task.data.data_root or None, task.runtime.seed)
    plan = plan_for(dataset.y_train, task.data, task.anchors, task.runtime.seed)
    if not 0 <= task.partition_id < len(plan.client_indices):
        raise ValueError(f"partition-id {task.partition_id} is outside the {len(plan.client_indices)} clients of this run")
    return dataset, plan.client_indices[task.partition_id]


def check_fits_samples(dataset: Dataset, inputs: ArrayRecord) -> None:
    """The server's samples are inputs of the client's own kind and shape: its encoder takes both."""
    sent = inputs[protocol.SAMPLES].numpy().shape[1:] if protocol.SAMPLES in inputs else dataset.input_shape
    if sent != dataset.input_shape:
        raise ValueError(f"this client's data {dataset.name!r} has inputs of shape {dataset.input_shape}; the run's {sent}")


def client_model(dataset: Dataset, task: Task, context: Context) -> Classifier:
    """The client's model: seeded at first, then as the last round left it."""
    model = build_classifier(
        dataset.input_shape,
        dataset.num_classes,
        embedding_dim=task.model.embedding_dim,
        encoder=client_encoder(task, context),
        seed=derive_seed(task.runtime.seed, task.partition_id),
    )
    if MODEL_STATE in context.state:
        model.load_state_dict(context.state[MODEL_STATE].to_torch_state_dict())
    return model


def client_encoder(task: Task, context: Context) -> EncoderSpec:
    """This client's encoder: its SuperNode's ``--node-config encoder=...`` if set,
    else the run's list cycled over the partitions."""
    return EncoderSpec.for_client(str(context.node_config.get("encoder", task.model.encoder)), task.partition_id)


def model_facts(model: Classifier) -> dict[str, int]:
    """What the server records of each client's encoder: its width and its size."""
    return {protocol.EMBEDDING_DIM: model.head.in_features, protocol.ENCODER_PARAMETERS: parameter_count(model.embedder)}


def projection_reply(
    msg: Message,
    task: Task,
    samples: Tensor,
    absolute: Tensor,
    anchors: Tensor,
    metrics: MetricRecord,
    public: ArrayRecord | None = None,
) -> Message:
    """The final reply: relative subspaces of ``samples`` on ``anchors``, packed as
    the run's ``payload`` says (and, if asked, ``absolute``, the client's own
    embeddings of the samples; with atlas feedback, ``public``, those of the public pool)."""
    spaces = relative_subspaces(samples, anchors, task.similarities)
    if task.merge.payload_noise > 0:
        noise_seed = derive_seed(task.runtime.seed, task.partition_id, task.round, NOISE_STREAM)
        spaces = add_gaussian_noise(spaces, task.merge.payload_noise, noise_seed)
    arrays = payload_codec(task.merge.payload).encode(spaces)
    content = RecordDict(
        {
            protocol.RELATIVE: ArrayRecord({name: Array(np.ascontiguousarray(a)) for name, a in arrays.items()}),
            protocol.METRICS: metrics,
        }
    )
    if public is not None:
        content[protocol.PUBLIC_RELATIVE] = public
    if task.send_absolute:
        content[protocol.ABSOLUTE] = ArrayRecord({protocol.SAMPLES: Array(np.ascontiguousarray(absolute.numpy()))})
    return Message(content, reply_to=msg)


def _train_static(
    model: Classifier, task: Task, x: np.ndarray, y: np.ndarray, seed: int, alignment: AtlasAlignment | None = None
) -> dict:
    """``epochs`` more epochs on all local data (pulled towards the atlas, if ``alignment``)."""
    config = TrainConfig(
        task.model.epochs, task.model.batch_size, task.model.learning_rate, seed, loader_workers(task.runtime.num_cpus)
    )
    started = time.perf_counter()
    stats = fit(model, x, y, config, extra_loss=alignment)
    return {
        "num-examples": len(x),
        "train-loss": stats["train_loss"],
        "train-accuracy": stats["train_accuracy"],
        "train-seconds": time.perf_counter() - started,
    }


def _train_continual(model: Classifier, task: Task, local: np.ndarray, context: Context, seed: int) -> dict:
    """Round r trains on experience r - 1 of this client's stream with the Avalanche
    strategy, its replay buffer (and CaSpeR's reservoir) carried over in ``context.state``."""
    # Avalanche takes seconds to import, in every client process; static runs never need it
    quiet_library_noise()  # before Avalanche's first import here, after Flower's (relatlas/library_noise.py)
    from relatlas.benchmarks.rehearsal import restore_buffer, save_buffer
    from relatlas.benchmarks.streams import DatasetRef, class_schedule, client_stream
    from relatlas.clients.continual import build_strategy, train_experience
    from relatlas.clients.continual_config import ContinualConfig

    stream, run_seed = task.continual.stream, task.runtime.seed
    ref = DatasetRef(task.data.dataset, task.data.data_root, run_seed)
    schedule = class_schedule(ref.load().num_classes, task.continual.experiences, stream, run_seed)
    config = ContinualConfig.from_sections(task.model, task.continual, schedule)
    benchmark = client_stream(ref, local, schedule, stream, run_seed)
    strategy = build_strategy(model, config, seed=seed)
    if BUFFER_STATE in context.state:
        restore_buffer(strategy, context.state[BUFFER_STATE].to_torch_state_dict())
    index = task.round - 1
    result = train_experience(strategy, benchmark, index, seed)
    context.state[BUFFER_STATE] = ArrayRecord(save_buffer(strategy))
    seen = sum(len(benchmark.train_stream[j].dataset) for j in range(index + 1))
    avalanche = {protocol.AVALANCHE_PREFIX + name: value for name, value in result.avalanche_metrics.items()}
    return {"num-examples": seen, "train-seconds": result.train_seconds, protocol.HEAD_ACCURACY: result.head_accuracy} | avalanche
