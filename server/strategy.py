"""The relative-space merge as a Flower Message-API ``Strategy``.

``RelativeStrategy`` fits a Flower user's own ServerApp::

    @app.main()
    def main(grid, context):
        strategy = RelativeStrategy(RunConfig.from_mapping(context.run_config))
        result = strategy.start(grid, ArrayRecord(), num_rounds=strategy.config.num_rounds)

``configure_train`` binds the nodes to partitions (once) and sends each its task,
the public samples and the anchor mode's first message; ``aggregate_train``
validates the replies (``server/replies.py``), drops outliers, merges them with
the run's aggregation and scores the merged space: the aggregated arrays are the
merged relative space (static scenario), the metrics the round's scalars.
Where a round can (``server/streaming_round.py``), ``aggregate_train`` folds each
reply into running statistics as it is pulled and drops it, so ``replies`` may be
a lazy iterable (relatlas's own loop passes one; Flower's ``start`` a list).
Clients are not asked to evaluate (the merge is scored on the server), so
``configure_evaluate`` sends nothing.

Two-phase anchor modes need a second exchange (``query``) inside a round. It
runs in ``aggregate_train``, through the grid ``configure_train`` was given:
then Flower's own ``Strategy.start`` loop, and any loop a user writes, drives
every mode unchanged, where an overridden ``start`` would tie the modes to it.
relatlas's own loop (``server/federation.py``) calls the same two methods.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from relatlas.aggregation.aggregators import check_withstands, hostile_count
from relatlas.aggregation.screening import screen
from relatlas.clients import protocol
from relatlas.server.atlas import Atlas, make_atlas
from relatlas.server.config import RunConfig
from relatlas.server.exchange import FederationError, PulledReplies, answered_ids, unanswered, validated, wait_for_nodes
from relatlas.server.replies import ClientReply, parse_anchoring, parse_reply
from relatlas.server.run_setup import RoundOutcome, RunSetup
from relatlas.server.sampling import sample_nodes
from relatlas.server.streaming_round import RoundMerge, streams_round
from relatlas.server.tracking import scalar_metrics

log = logging.getLogger("relatlas")

MERGED = "merged"  # the aggregated ArrayRecord's one array: the merged relative space


class RelativeStrategy(Strategy):
    """Federated merging of relative representations, round by round.

    ``rounds`` and ``failures`` grow as rounds finish (start them from a checkpoint's
    to resume); ``outcome`` is the last round's. ``on_valid_replies`` sees each
    round's valid replies before they are merged (relatlas logs continual clients).
    """

    def __init__(
        self, config: RunConfig, setup: RunSetup | None = None,
        on_valid_replies: Callable[[list[ClientReply], int], None] | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.setup = setup or RunSetup.prepare(config)
        self.on_valid_replies = on_valid_replies
        self.partitions: dict[int, int] = {}  # node -> the partition the server assigned it
        self.sampled: dict[int, int] = {}  # the round's nodes asked to train (fraction-train), of ``partitions``
        self.rounds: list[dict] = []
        self.failures: list[dict] = []
        self.outcome: RoundOutcome | None = None
        self._grid: Grid | None = None
        self._sent: list[Message] = []
        self._round_started = 0.0
        self._reference_round = 0  # the last round the centralised reference trained for
        self.atlas: Atlas | None = None  # the last round's merge of the public pool, sent with the next round
        self.holders: dict[int, bool] = {}  # partition -> whether its last reply showed it holds the public inputs
        self._queries: list[Message] = []

    def assign(self, nodes: Sequence[int]) -> None:
        """Bind the nodes, in id order, to partitions 0, 1, ...: a node trains on the
        partition its task names, and a reply claiming another is dropped."""
        self.partitions = {node: partition for partition, node in enumerate(sorted(nodes))}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """The round's ``train`` messages, to its seeded sample of the nodes (``fraction-train``; every
        node by default); the first call waits for the nodes (``node-timeout``).
        Clients keep their own models, so ``arrays`` and ``config`` are not sent; with
        ``atlas-weight`` > 0, the last round's atlas is (none in the first round, or after a resume)."""
        self._grid = grid
        cfg = self.config
        if not self.partitions:
            self.assign(wait_for_nodes(grid, cfg.num_clients, cfg.min_clients, cfg.node_timeout))
            log.info("%d clients; rounds %d-%d, %d epochs each", len(self.partitions), server_round, cfg.num_rounds, cfg.epochs)
        size = cfg.clients_per_round(len(self.partitions))
        self.sampled = sample_nodes(self.partitions, size, cfg.seed, server_round)
        log.info("round %d/%d: training on %d of %d clients", server_round, cfg.num_rounds, size, len(self.partitions))
        self._round_started = time.perf_counter()
        self._sent = self.setup.train_messages(self.sampled, server_round, self.atlas, self.holders)
        self._queries = []
        return self._sent

    def train_reference(self, server_round: int) -> None:
        """Train the centralised reference for ``server_round`` (once), e.g. while the clients train."""
        if self.setup.central is not None and self._reference_round < server_round:
            self.setup.central.train_round(server_round)
            self._reference_round = server_round

    @property
    def streams(self) -> bool:
        """Whether this run's rounds merge each reply as it arrives (``streams_round``)."""
        return streams_round(self.setup, self.on_valid_replies is not None)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Validate, screen, merge and score the replies to this round's ``configure_train``: one at a
        time as ``replies`` yields them, each then dropped, where the round ``streams``; else all at once."""
        self.train_reference(server_round)
        failures: list[dict] = []
        streamed = self.streams
        if streamed:
            merge = RoundMerge(self.setup, self.sampled.values())
            for reply in self._valid(replies, server_round, failures):
                merge.add(reply)
            replies_seconds = time.perf_counter() - self._round_started  # to its last reply, folded as each came
            merge.finish()
            valid, scores, outliers, answered = merge.replies, merge.scores, merge.outliers, merge.answered
        else:
            replies_seconds = time.perf_counter() - self._round_started  # from the round's first message to its last reply
            valid = sorted(self._valid(list(replies), server_round, failures), key=lambda r: r.partition_id)
            answered = [r.partition_id for r in valid]
            scores, dropped = screen([r.spaces for r in valid], self.config.outlier_threshold)
            outliers = [(valid[i].node_id, reason) for i, reason in dropped.items()]
            scores = [score for i, score in enumerate(scores) if i not in dropped]
            valid = [reply for i, reply in enumerate(valid) if i not in dropped]
        sent_bytes = sum(protocol.message_bytes(m.content) for m in self._sent + self._queries) / max(len(self.sampled), 1)
        self.holders |= dict.fromkeys(self.sampled.values(), False) | dict.fromkeys(answered, True)
        received = len(answered)  # the valid replies, the screened ones included
        failures += [{"node": node, "round": server_round, "reason": reason} for node, reason in outliers]
        self.failures += failures
        for failure in failures:
            log.warning("round %d: dropped node %s: %s", server_round, failure["node"], failure["reason"])
        if len(valid) < self.config.min_clients:
            raise FederationError(f"round {server_round}: {len(valid)} valid replies, min-clients is {self.config.min_clients}")
        hostile = self._hostile(received, len(valid), server_round)
        if self.on_valid_replies is not None:
            self.on_valid_replies(valid, server_round)
        outcome = merge.evaluate(server_round) if streamed else self.setup.evaluate(valid, server_round, hostile)
        outcome.metrics["clients_failed"] = len(failures)
        outcome.metrics["client_outlier_score"] = scores
        outcome.metrics["merge_streamed"] = streamed
        outcome.metrics["round_seconds"] = time.perf_counter() - self._round_started
        outcome.metrics["round_replies_seconds"] = replies_seconds
        outcome.metrics["bytes_sent_per_client"] = sent_bytes  # its train (and query) messages' records
        if len(self.sampled) < len(self.partitions):  # who was asked; ``client_partitions`` says who answered
            outcome.metrics["sampled_partitions"] = sorted(self.sampled.values())
        if self.setup.expected.public_samples:
            pools = [r.public for r in valid]  # every valid reply has them: parse_reply asks for them
            self.atlas = make_atlas(
                self.config.aggregation, pools, [r.partition_id for r in valid], self.setup.merge_weights(valid), hostile,
                self.config.atlas_leave_one_out,
            )  # fmt: skip
            outcome.metrics |= self.setup.pool_agreement(self.atlas, pools)
        self.rounds.append(outcome.metrics)
        self.outcome = outcome
        log.info("round %d: merged accuracy %.3f", server_round, outcome.metrics["merged_accuracy"])
        merged = None if outcome.merged is None else ArrayRecord({MERGED: Array(np.ascontiguousarray(outcome.merged.numpy()))})
        return merged, MetricRecord(scalar_metrics(outcome.metrics))

    def _hostile(self, received: int, kept: int, server_round: int) -> int | None:
        """The hostile clients the merge must withstand among the ``kept`` replies: those
        declared among the ``received`` valid ones, less those the screen dropped; None if none declared."""
        declared = self.config.max_hostile
        if not declared:
            return None
        hostile = max(hostile_count(declared, received) - (received - kept), 0)
        try:
            check_withstands(self.config.aggregation, kept, hostile, f"max-hostile {declared:g}")
        except ValueError as err:
            raise FederationError(f"round {server_round}: {kept} valid replies: {err}") from None
        return hostile

    def _valid(self, answers: Iterable[Message], server_round: int, failures: list[dict]) -> Iterator[ClientReply]:
        """The valid final replies, one by one as ``answers`` come, the dropped ones appended to ``failures``;
        a two-phase mode's first replies are all paired, then the same clients asked to project (``query``)."""
        timeout, setup, answered = self.config.round_timeout, self.setup, set()
        answers = answered_ids(answers, answered)
        if not setup.anchor_mode.two_phase:
            yield from validated(answers, setup.expected, server_round, parse_reply, self.partitions, failures)
            failures += unanswered(self._sent, answered, timeout, server_round)
            return
        invalid: list[dict] = []
        anchorings = sorted(
            validated(answers, setup.expected, server_round, parse_anchoring, self.partitions, invalid),
            key=lambda a: a.partition_id,
        )
        failures += unanswered(self._sent, answered, timeout, server_round) + invalid
        if len(anchorings) < self.config.min_clients:
            return
        try:
            paired = setup.anchor_mode.pair(anchorings, self.config)
        except ValueError as err:
            raise FederationError(f"round {server_round}: cannot pair the clients' anchors: {err}") from err
        owners = {a.partition_id: a.node_id for a in anchorings}
        queries = self._queries = setup.query_messages(paired, owners, server_round, self.holders)
        projected = PulledReplies(self._grid, queries, timeout)
        first = {a.node_id: a.payload_bytes for a in anchorings}  # the payload counts both phases
        for reply in validated(projected, setup.expected, server_round, parse_reply, self.partitions, failures):
            yield dataclasses.replace(reply, payload_bytes=reply.payload_bytes + first[reply.node_id])
        failures += unanswered(queries, projected.answered, timeout, server_round)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """None: the merged space is scored on the server, in ``aggregate_train``."""
        return []

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return None

    def summary(self) -> None:
        cfg = self.config
        log.info(
            "RelativeStrategy: %d clients (min %d), anchors-mode %s, %d anchors, aggregation %s, %s scenario",
            cfg.num_clients, cfg.min_clients, cfg.anchors_mode, cfg.anchors, cfg.aggregation, cfg.scenario,
        )  # fmt: skip
