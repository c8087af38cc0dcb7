"""The server half of the baselines (``server/algorithm_*.py``), in relatlas's harness.

``AlgorithmStrategy`` is ``RelativeStrategy`` with an ``AlgorithmServer`` beside it:
each round's ``train`` messages carry relatlas's task and samples plus what the
algorithm sends (FedAvg's global weights, FedProto's global prototypes); each
reply is relatlas's plus the algorithm's records, which are taken off and checked
first (a reply whose records fail is dropped like any invalid reply), so the rest
is validated, merged and scored exactly as in a relatlas run (``relatlas``'s
``merged_accuracy``, ``client_accuracy``, stitching, ...). Then the algorithm
aggregates, and every client's own model is scored on the test part of the
evaluation samples (``client_model_accuracy``: its head's prediction), with the
algorithm's own figures (``global_accuracy``, ``client_prototype_accuracy``).
``run_federation`` drives it: checkpoints, MLflow and ``results.json`` as for relatlas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from relatlas.clients.algorithm_client import ALGORITHM, EMBEDDINGS, LOGITS
from relatlas.clients.protocol import METRICS, ReplyError, float_array
from relatlas.registries import ANCHOR_MODES
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.federation import run_federation
from relatlas.server.run_setup import RunSetup
from relatlas.server.strategy import RelativeStrategy

Records = dict[str, ArrayRecord | ConfigRecord]
INVALID_RECORDS = 1  # the error code of a reply whose algorithm records failed their check


class AlgorithmServer(Protocol):
    """What an algorithm adds to relatlas's rounds, on the server."""

    reply_records: tuple[str, ...]
    """The records of a reply that are the algorithm's, beyond ``algorithm`` (FedAvg's ``arrays``)."""

    def configure(self, server_round: int, nodes: list[int], grid: Grid) -> dict[int, Records]:
        """What each node (of ``nodes``) is sent this round, beyond relatlas's task and samples."""
        ...

    def check_reply(self, records: Mapping[str, ArrayRecord]) -> None:
        """Raise ``ReplyError`` if a reply's algorithm records cannot be aggregated."""
        ...

    def aggregate(self, server_round: int, replies: Mapping[int, Mapping[str, ArrayRecord]], sizes: Mapping[int, int]) -> dict:
        """Aggregate the valid replies' records (partition -> records; ``sizes``: their
        training samples); return the round's metrics of the algorithm's own."""
        ...


class AlgorithmStrategy(RelativeStrategy):
    """``RelativeStrategy`` whose rounds also carry ``server``'s algorithm."""

    def __init__(self, config: RunConfig, setup: RunSetup, server: AlgorithmServer) -> None:
        super().__init__(config, setup)
        self.server = server
        self._records: dict[int, dict[str, ArrayRecord]] = {}  # node -> its reply's algorithm records
        self._sizes: dict[int, float] = {}  # node -> its reply's num-examples

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        extra = self.server.configure(server_round, sorted(self.sampled), grid)  # the round's sample of the nodes
        self._sent = [_with_records(message, extra.get(message.metadata.dst_node_id, {})) for message in messages]
        return self._sent

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Take the algorithm's records off the replies, let relatlas validate and score the
        rest, then aggregate the valid replies' records and score each client's model."""
        replies = list(replies)  # pulled first: a lazy ``PulledReplies`` gives the sent messages their ids as it pushes them
        sent = {message.metadata.message_id: message for message in self._sent}
        self._records, self._sizes = {}, {}
        answers = [self._take_records(reply, sent[reply.metadata.reply_to_message_id]) for reply in replies]
        merged, _ = super().aggregate_train(server_round, answers)
        nodes = {partition: node for node, partition in self.partitions.items()}
        partitions = self.outcome.metrics["client_partitions"]
        records = {p: self._records[nodes[p]] for p in partitions}
        sizes = {p: int(self._sizes[nodes[p]]) for p in partitions}  # num-examples: relatlas's check has passed it
        own_models = [self._score(records[p][ALGORITHM][LOGITS]) for p in partitions]
        metrics = {"algorithm": self.config.algorithm, "client_model_accuracy": own_models}
        metrics |= self.server.aggregate(server_round, records, sizes)
        self.outcome.metrics.update(metrics)  # the round's entry of ``rounds`` too: the same dict
        return merged, MetricRecord({k: v for k, v in metrics.items() if isinstance(v, float)})

    def _take_records(self, reply: Message, sent: Message) -> Message:
        """``reply`` without the algorithm's records, kept in ``_records``; an error reply
        (read by relatlas's checks as a failed client) if they fail the algorithm's check."""
        if reply.has_error():
            return reply
        names = (ALGORITHM, *self.server.reply_records)
        content = reply.content
        try:
            missing = [name for name in names if name not in content.array_records]
            if missing:
                raise ReplyError(f"reply lacks the algorithm's record {missing[0]!r}")
            records = {name: content.array_records[name] for name in names}
            self._check_scored(records[ALGORITHM])
            self.server.check_reply(records)
        except ReplyError as err:
            return Message(Error(INVALID_RECORDS, f"ReplyError: {err}"), reply_to=sent)
        self._records[reply.metadata.src_node_id] = records
        self._sizes[reply.metadata.src_node_id] = content.metric_records.get(METRICS, {}).get("num-examples", 0.0)
        rest = RecordDict({name: record for name, record in content.items() if name not in names})
        return Message(rest, reply_to=sent)

    def _check_scored(self, record: ArrayRecord) -> None:
        """The logits and embeddings of the round's samples that the client's model is scored with."""
        rows, classes = self.setup.expected.num_samples, self.setup.dataset.num_classes
        logits = float_array(record, LOGITS, ALGORITHM)
        if logits.shape != (rows, classes):
            raise ReplyError(f"algorithm logits have shape {logits.shape}; expected ({rows}, {classes})")
        embeddings = float_array(record, EMBEDDINGS, ALGORITHM)
        if embeddings.ndim != 2 or embeddings.shape[0] != rows or embeddings.shape[1] > self.setup.expected.embedding_dim:
            raise ReplyError(f"algorithm embeddings have shape {embeddings.shape}; expected ({rows}, d)")

    def _score(self, logits: ArrayRecord) -> float:
        return held_out_accuracy(self.setup, np.asarray(logits.numpy()).argmax(axis=1))


def held_out_accuracy(setup: RunSetup, predictions: np.ndarray) -> float:
    """Accuracy of ``predictions`` of every evaluation sample, on the probes' test part:
    the samples every other accuracy of the round is scored on."""
    test = setup.probes.test
    return float((predictions[test] == setup.labels[test]).mean())


def _with_records(message: Message, records: Records) -> Message:
    """``message`` with ``records`` added: a new message, since Flower's strategies share one content among theirs."""
    if not records:
        return message
    content = RecordDict(dict(message.content.items()) | records)
    meta = message.metadata
    return Message(content, dst_node_id=meta.dst_node_id, message_type=meta.message_type, group_id=meta.group_id)


def check_baseline(config: RunConfig) -> None:
    """What every baseline needs of a run: the static scenario, a one-phase anchor
    mode, no ``--resume`` (a baseline's server state lives in memory only) and no atlas (relatlas's feedback)."""
    name = config.algorithm
    if config.atlas_weight:
        raise ConfigError(f"algorithm {name} sends back what it sends back; --atlas-weight is relatlas's feedback")
    if config.scenario != "static":
        raise ConfigError(f"algorithm {name} runs the static scenario; the continual one is relatlas's (--algorithm relatlas)")
    if ANCHOR_MODES.get(config.anchors_mode).two_phase:
        raise ConfigError(f"algorithm {name} projects on shared anchors in one phase; anchors-mode {config.anchors_mode} has two")
    if config.resume:
        raise ConfigError(f"algorithm {name} keeps its server state in memory only: --resume continues relatlas runs")


def baseline_server_app(make_server: Callable[[RunConfig, RunSetup], AlgorithmServer]) -> ServerApp:
    """The ServerApp of a baseline: relatlas's run (``run_federation``) with the algorithm's server beside it."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = RunConfig.from_mapping(context.run_config)
        setup = RunSetup.prepare(config)
        run_federation(grid, config, AlgorithmStrategy(config, setup, make_server(config, setup)))

    return app
