"""What stays fixed over a federated run: the data plan, the anchor mode and
its plan, what every round sends, and how a round's replies are scored."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict
from torch import Tensor

from relatlas.aggregation.aggregators import ClientSpace, aggregate, needs_labels, required_similarities
from relatlas.aggregation.measures import neighbour_label_agreement
from relatlas.benchmarks.datasets import Dataset, read_dataset, stratified_split
from relatlas.benchmarks.own_data import run_classes
from relatlas.benchmarks.sources import loader_workers, wire_array
from relatlas.benchmarks.splits import FederationPlan, plan_for
from relatlas.benchmarks.streams import class_schedule
from relatlas.clients import protocol
from relatlas.clients.anchor_modes import AnchorMode, AnchorPlan, QueryMessage
from relatlas.clients.local_test import training_rows
from relatlas.clients.public_inputs import input_digest, public_record
from relatlas.clients.task import Task
from relatlas.clients.training import TrainConfig, client_threads
from relatlas.encoder_spec import EncoderSpec, widest_embedding
from relatlas.registries import ANCHOR_MODES
from relatlas.server.atlas import Atlas, check_pool_disjoint
from relatlas.server.centralized import CentralizedReference
from relatlas.server.checkpoint import config_hash
from relatlas.server.client_curves import local_test_scores
from relatlas.server.config import RunConfig
from relatlas.server.continual import ExperienceProbes, evaluate_experience, head_accuracy
from relatlas.server.evaluation import ProbeSplit, evaluate_round, split_public
from relatlas.server.replies import ClientReply, Expected

PROBE_TEST_FRACTION = 0.3
Holders = Mapping[int, bool]  # partition -> whether its last reply showed it holds the public inputs; absent: unknown
NO_HOLDERS: Holders = MappingProxyType({})


@dataclass
class RoundOutcome:
    metrics: dict[str, Any]
    merged: Tensor | None  # static scenario only, for the figures
    central: Tensor | None


@dataclass(frozen=True)
class RunSetup:
    """A run's fixed parts, built once from its config (``prepare``)."""

    config: RunConfig
    dataset: Dataset  # labels and names; its inputs only where the centralised reference trains on them
    plan: FederationPlan
    anchors: np.ndarray
    samples: np.ndarray  # the evaluation samples every client projects
    labels: np.ndarray  # theirs, for scoring only; never sent
    anchor_mode: AnchorMode
    anchor_plan: AnchorPlan
    sent: dict[str, Array]  # raw inputs as sent: the plan's anchors (if any) and the samples, serialised once
    expected: Expected
    probes: ProbeSplit
    central: CentralizedReference | None
    experiences: ExperienceProbes | None
    classes: tuple[str, ...] = ()  # the label list sent to clients that bring their own data
    public_labels: np.ndarray | None = None  # a merge that learns from labels: the anchors', whose rows follow the samples
    digests: dict[str, str] = dataclasses.field(default_factory=dict)  # of each of ``sent``: named in place of the raw inputs
    rows: dict[str, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)  # (test, train) rows of ``sent``

    @classmethod
    def prepare(cls, config: RunConfig) -> RunSetup:
        dataset = read_dataset(config.dataset, config.data_root or None, config.seed)  # not cached: the inputs are dropped below
        plan = plan_for(dataset.y_train, config, config, config.seed)
        own_data = bool(config.client_data)  # the dataset is the public pool; the clients bring their own (own_data.py)
        classes = run_classes(dataset, config.class_names) if own_data else ()
        if own_data:  # which classes a client holds is its own business: every one, as far as scoring knows
            plan = dataclasses.replace(plan, client_classes=(tuple(range(dataset.num_classes)),) * config.num_clients)
        anchors, samples, labels = dataset.x_train[plan.anchor_indices], dataset.x_test, dataset.y_test
        sample_rows = np.arange(len(labels))
        if 0 < config.eval_samples < len(labels):
            _, sample_rows = stratified_split(labels, config.eval_samples / len(labels), config.seed)
            samples, labels = samples[sample_rows], labels[sample_rows]
        rows = {protocol.SAMPLES: (sample_rows, np.arange(0))}
        anchors, samples = wire_array(anchors), wire_array(samples)  # the pool, read whole once: it is sent every round
        if len(plan.public_indices):  # read only where there is a pool: a lazy source decodes what it is asked for
            check_pool_disjoint(wire_array(dataset.x_train[plan.public_indices]), samples)
        public_labels = None
        if needs_labels(config.aggregation):  # clients project the anchors too, so the merge learns from their labels
            samples, public_labels = np.concatenate([samples, anchors]), dataset.y_train[plan.anchor_indices]
            rows[protocol.SAMPLES] = (sample_rows, np.asarray(plan.anchor_indices))
        anchor_mode = ANCHOR_MODES.get(config.anchors_mode)
        anchor_plan = anchor_mode.plan(config, dataset, plan)
        static = config.scenario == "static"
        baselines = config.simulation_baselines and static  # the continual baseline is `relatlas bench continual`
        expected = Expected(
            required_similarities(config.aggregation), len(samples), len(anchors), config.num_clients, baselines,
            config.anchors_mode, config.seed_anchors, widest_embedding(config.encoder, config.embedding_dim),
            partition_sizes=() if own_data else tuple(len(rows) for rows in plan.client_indices),
            payload_noise=config.payload_noise, payload=config.payload, local_test=config.local_test_fraction > 0,
            public_samples=len(plan.public_indices) if config.atlas_weight else 0,
        )  # fmt: skip
        train_part, test_part = stratified_split(labels, PROBE_TEST_FRACTION, config.seed)
        probes = ProbeSplit(train_part, test_part, labels, dataset.num_classes, config.probe_epochs, config.seed)
        experiences = None
        if not static:
            schedule = class_schedule(dataset.num_classes, config.experiences, config.stream, config.seed)
            experiences = ExperienceProbes.build(probes, schedule, config.stream, config.seed)
        central = None
        if baselines and not own_data:  # the reference trains on the clients' data, which the server does not hold
            train = TrainConfig(
                epochs=config.epochs,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                seed=config.seed,
                workers=loader_workers(config.num_cpus),
            )
            trained = training_rows(plan.client_indices, dataset.y_train, config.local_test_fraction, config.seed)
            central = CentralizedReference(
                dataset,
                dataclasses.replace(plan, client_indices=trained),  # never the rows the clients hold back
                embedding_dim=config.embedding_dim,
                encoder=EncoderSpec.for_client(config.encoder, 0),
                train=train,
                threads=client_threads(config.num_cpus),
            )  # the first client's encoder
        sent = anchor_plan.inputs() | {protocol.SAMPLES: Array(samples)}
        if anchor_plan.rows is not None:
            rows[protocol.ANCHORS] = (np.arange(0), np.asarray(anchor_plan.rows))
        digests = {name: input_digest(array.numpy()) for name, array in sent.items()}
        kept = dataset if central is not None else dataset.without_inputs()  # the server needs only what it sends
        return cls(
            config, kept, plan, anchors, samples, labels, anchor_mode, anchor_plan, sent, expected, probes, central,
            experiences, classes, public_labels, digests, {} if own_data else rows,  # own data: the clients lack the dataset
        )  # fmt: skip

    @functools.cached_property
    def run_key(self) -> str:
        """The config hash: names the clients' saved state and the checkpoint's run."""
        return config_hash(self.config)

    @functools.cached_property
    def task_config(self) -> RunConfig:
        """The config the tasks carry: the label list spelled out where clients bring their own data."""
        return dataclasses.replace(self.config, class_names=",".join(self.classes)) if self.classes else self.config

    def task(self, round_number: int, partition: int, anchoring: Mapping[str, Any] | None = None) -> Task:
        """What partition ``partition`` is asked in a round: the run's sections, the
        round's facts and the anchor mode's entries (its plan's, then ``anchoring``)."""
        return Task.of(
            self.task_config,
            round=round_number,
            partition_id=partition,
            similarities=self.expected.similarities,
            send_absolute=self.expected.absolute,
            run_key=self.run_key,
            keep_state=round_number < self.config.num_rounds,  # a resumed run may need it
            anchoring=self.anchor_plan.task() | dict(anchoring or {}),
        )

    def train_messages(
        self, partitions: Mapping[int, int], round_number: int, atlas: Atlas | None = None, holders: Holders = NO_HOLDERS
    ) -> list[Message]:
        """One ``train`` message per node (``partitions``: node -> partition): the
        client's task, the inputs of the anchor mode's first message and, if given, its atlas."""
        inputs = self.anchor_mode.train_inputs(self.sent)
        return [
            _message(self.content(round_number, partition, inputs, holders.get(partition), atlas=atlas), node, protocol.TRAIN)
            for node, partition in partitions.items()
        ]

    def query_messages(
        self, paired: dict[int, QueryMessage], nodes: Mapping[int, int], round_number: int, holders: Holders = NO_HOLDERS
    ) -> list[Message]:
        """Second phase: one ``query`` message per paired partition (``nodes``: partition -> node)."""
        return [
            _message(self.content(round_number, partition, self.sent, holders.get(partition), task, extra), nodes[partition],
                     protocol.QUERY)
            for partition, (task, extra) in paired.items()
        ]  # fmt: skip

    def content(
        self, round_number: int, partition: int, inputs: dict[str, Array], holds: bool | None,
        anchoring: Mapping[str, Any] | None = None, extra: Mapping[str, Array] | None = None, atlas: Atlas | None = None,
    ) -> RecordDict:  # fmt: skip
        """A message's content: the task (``anchoring``: the mode's extra entries), the public ``inputs``
        named by digest and sent only where needed (``by_reference``), ``extra`` inputs, the atlas if any."""
        raw, public = self.by_reference(inputs, holds)
        content = RecordDict(
            {
                protocol.TASK: ConfigRecord(self.task(round_number, partition, anchoring).to_record()),
                protocol.INPUTS: ArrayRecord(raw | dict(extra or {})),
                protocol.PUBLIC: public,
            }
        )
        if atlas is not None:
            content[protocol.ATLAS] = atlas.for_partition(partition)
        return content

    def by_reference(self, inputs: dict[str, Array], holds: bool | None) -> tuple[dict[str, Array], ConfigRecord]:
        """``inputs`` as a client gets them, named by digest: nothing more if it ``holds`` them (a reply
        showed it); if not known, their rows in the run's dataset where the clients hold it; else raw."""
        named = {name: self.digests[name] for name in inputs}
        rows = {name: self.rows[name] for name in inputs if name in self.rows and holds is None}
        raw = {name: array for name, array in inputs.items() if holds is not True and name not in rows}
        return raw, public_record(named, rows)

    def merge_weights(self, replies: Sequence[ClientReply]) -> list[int] | None:
        """Each reply's weight in a merge (``merge-weights``): its sample count, or None for equal weights."""
        return [r.num_examples for r in replies] if self.config.merge_weights == "samples" else None

    def pool_agreement(self, atlas: Atlas, pools: Sequence[ClientSpace]) -> dict[str, Any]:
        """How often a public-pool sample's 5 nearest neighbours share its class, in the atlas and in each
        client's own rows (``aggregate`` of it alone): what the atlas knows beyond the clients (labels read here only)."""
        labels = torch.as_tensor(self.dataset.y_train[self.plan.public_indices])
        rows = torch.from_numpy(atlas.merged[protocol.ATLAS_ROWS].numpy())
        return {
            "atlas_neighbour_agreement": neighbour_label_agreement(rows, labels),
            "client_pool_neighbour_agreement": [
                neighbour_label_agreement(aggregate(self.config.aggregation, [pool]), labels) for pool in pools
            ],
        }

    def evaluate(self, replies: Sequence[ClientReply], round_number: int, hostile: int | None = None) -> RoundOutcome:
        """Merge the replies, against ``hostile`` of them if declared, and score the
        merged space against the references."""
        weights = self.merge_weights(replies)
        spaces, labelled = split_public([r.spaces for r in replies], len(self.labels), self.public_labels, self.config.seed)
        if self.experiences is not None:
            metrics = evaluate_experience(
                self.config.aggregation, spaces, [r.partition_id for r in replies],
                self.experiences, round_number, weights, hostile, labelled,
            )  # fmt: skip
            metrics["client_head_accuracy"] = [head_accuracy(r, round_number) for r in replies]
            return RoundOutcome(metrics | round_facts(replies, round_number), None, None)
        centralized, central_labelled = None, None
        if self.central is not None:
            centralized = self.central.spaces(self.anchors, self.samples, self.expected.similarities)
            [centralized], central_labelled = split_public([centralized], len(self.labels), self.public_labels, self.config.seed)
        metrics, merged, central = evaluate_round(
            self.config.aggregation,
            spaces,
            [r.partition_id for r in replies],
            self.probes,
            self.plan,
            weights=weights,
            absolute=[r.absolute[: len(self.labels)] for r in replies] if self.expected.absolute else None,
            centralized=centralized,
            client_scores=self.config.client_scores,
            hostile=hostile,
            labelled=labelled,
            central_labelled=central_labelled,
        )
        if self.expected.local_test:
            metrics |= local_test_scores(replies)
        return RoundOutcome(metrics | round_facts(replies, round_number), merged, central)


def _message(content: RecordDict, node: int, message_type: str) -> Message:
    round_number = content[protocol.TASK]["round"]
    return Message(content, dst_node_id=node, message_type=message_type, group_id=str(round_number))


def round_facts(replies: Sequence[ClientReply], round_number: int) -> dict[str, Any]:
    return {
        "round": round_number,
        "clients_answered": len(replies),
        "payload_bytes_per_client": float(np.mean([r.payload_bytes for r in replies])),
        "client_train_seconds": [r.metrics.get("train-seconds", 0.0) for r in replies],
        "client_num_examples": [r.num_examples for r in replies],  # what each trained on: its partition's or its own data's size
        "client_embedding_dim": [_count(r.metrics, protocol.EMBEDDING_DIM) for r in replies],
        "client_encoder_parameters": [_count(r.metrics, protocol.ENCODER_PARAMETERS) for r in replies],
    }


def _count(metrics: Mapping[str, float], key: str) -> int | None:
    """A whole number a client reported (replies carry metrics as floats); ``None`` if it sent none."""
    return None if key not in metrics else int(metrics[key])
