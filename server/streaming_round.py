"""A round merged as its replies arrive: each valid reply is folded into the
aggregation's running statistics (``aggregation/streaming.py``) and its spaces
dropped, so the server holds O(samples x anchors), not O(clients x samples x anchors).

``streams_round`` decides, in one place, whether a run's rounds stream: only when
nothing in the round needs every client's space at once. Otherwise the round is
merged as before, all replies at once (``RunSetup.evaluate``).

The outlier screen holds the first 16 valid replies and screens them together, as
the batch path does (a round of at most 16 clients is screened exactly as in a
batch); each later reply is scored against their median space and typical
distance, then folded or dropped. Past 16 clients the screen therefore depends
on which replies came first.

The owner protocol's merges stream too: the evaluation samples are grouped by
class, and a reply's rows of a class are folded into that class's merge if the
client owns the class (``owner_accuracy``), or if the client before it in the
round's sample, in partition order, owns it (``owner_shuffled_accuracy``,
``shuffled_owner_masks``' derangement). A class no answering client is given
takes the plain merge's rows, as the batch path's orphans do. When every sampled
client answers, both equal the batch path's; when some fail, the shuffled merge
still hands each client its sampled predecessor's classes (the batch path shifts
over those that answered), so the two may differ.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from relatlas.aggregation.accumulators import Accumulator
from relatlas.aggregation.aggregators import check_merged, hostile_count
from relatlas.aggregation.quantile_sketch import CAPACITY
from relatlas.aggregation.screening import outlier_reason, outlier_scores, reference_score, screen_reference
from relatlas.aggregation.streaming import open_accumulator, streams
from relatlas.server.client_curves import local_test_scores
from relatlas.server.replies import ClientReply
from relatlas.server.run_setup import RoundOutcome, RunSetup, round_facts

OWNER_KEYS = ("owner_accuracy", "owner_shuffled_accuracy")
SCREENED_TOGETHER = CAPACITY  # replies held and screened together before any is folded, as the robust sketches hold


def streams_round(setup: RunSetup, sees_replies: bool = False) -> bool:
    """Whether a round of ``setup``'s run merges each reply as it arrives: its aggregation has an
    accumulator, the scenario is static, and nothing needs every client's space at once: no
    per-client scores (``client-scores``: each client's accuracy, stitching, the concatenation), no
    absolute-embeddings baseline, no atlas public pool, no merge learning from labels, a hostile
    count that does not depend on how many answer or are screened out (``max-hostile`` 0, or a count
    without ``outlier-threshold``), and no ``sees_replies`` hook that is handed the round's replies."""
    config = setup.config
    return (
        streams(config.aggregation)
        and config.scenario == "static"
        and not config.client_scores
        and not setup.expected.absolute
        and not setup.expected.public_samples
        and setup.public_labels is None
        and (not config.max_hostile or (config.max_hostile >= 1 and not config.outlier_threshold))
        and not sees_replies
    )


class RoundMerge:
    """One streamed round: the outlier screen, the merge and the owner merges, fed a valid reply at a
    time (``add``, then ``finish``), and the small facts of each reply kept (``replies``) without its spaces."""

    def __init__(self, setup: RunSetup, sampled: Iterable[int]) -> None:
        config = setup.config
        self.setup = setup
        self.hostile = hostile_count(config.max_hostile, 0) if config.max_hostile else None  # a count (streams_round)
        self.merged = open_accumulator(config.aggregation, self.hostile)
        labels = setup.probes.labels
        self.by_label = torch.from_numpy(np.argsort(labels, kind="stable"))  # the samples, class by class
        classes, counts = np.unique(labels, return_counts=True)
        ends = np.cumsum(counts)  # class -> its samples' slice of ``by_label``
        self.rows = {int(c): slice(int(end - n), int(end)) for c, n, end in zip(classes, counts, ends)}
        order = sorted(sampled)
        self.owner = {
            "owner_accuracy": {p: p for p in order},
            "owner_shuffled_accuracy": {p: order[i - 1] for i, p in enumerate(order)},  # the mask of the one before
        }
        self.by_class: dict[str, dict[int, Accumulator]] = {key: {} for key in OWNER_KEYS}
        self._replies: list[ClientReply] = []  # the folded replies' facts
        self._held: list[ClientReply] = []  # the first replies, until screened together
        self._reference: dict[str, tuple[Tensor, Tensor]] | None = None  # what later replies are screened against
        self._scores: dict[int, float] = {}  # partition -> outlier score, of the folded replies
        self._outliers: list[tuple[int, int, str]] = []  # (partition, node, reason) of the screened ones
        self.fold_seconds = 0.0  # time spent merging replies as they came

    def add(self, reply: ClientReply) -> None:
        """Screen ``reply`` and fold it into every merge unless it is an outlier; keep its facts, not its spaces.
        The first ``SCREENED_TOGETHER`` replies are held and screened together, as the batch path screens them;
        each later one is scored against their median space and typical distance (``screen_reference``)."""
        if self._reference is not None:
            self._judge(reply, reference_score(reply.spaces, self._reference))
            return
        self._held.append(reply)
        if len(self._held) == SCREENED_TOGETHER:
            self._reference = screen_reference([r.spaces for r in self._held])
            self.finish()

    def finish(self) -> None:
        """Screen and fold the replies still held (the round's last, where fewer than ``SCREENED_TOGETHER`` came)."""
        held, self._held = self._held, []
        for reply, score in zip(held, outlier_scores([r.spaces for r in held])):
            self._judge(reply, score)

    def _judge(self, reply: ClientReply, score: float) -> None:
        reason = outlier_reason(score, self.setup.config.outlier_threshold)
        if reason is None:
            self._fold(reply)
            self._scores[reply.partition_id] = score
        else:
            self._outliers.append((reply.partition_id, reply.node_id, reason))

    def _fold(self, reply: ClientReply) -> None:
        started = time.perf_counter()
        config = self.setup.config
        weight = float((self.setup.merge_weights([reply]) or [1.0])[0])
        self.merged.add(reply.spaces, weight)
        by_label = {name: space[self.by_label] for name, space in reply.spaces.items()}  # one gather; a class is a slice
        for key in OWNER_KEYS:
            owner = self.owner[key].get(reply.partition_id, reply.partition_id)
            for c in self.setup.plan.client_classes[owner]:
                if int(c) in self.rows:
                    rows = self.rows[int(c)]
                    merge = self.by_class[key].setdefault(int(c), open_accumulator(config.aggregation, self.hostile))
                    merge.add({name: space[rows] for name, space in by_label.items()}, weight)
        self._replies.append(dataclasses.replace(reply, spaces={}, absolute=None, public=None))
        self.fold_seconds += time.perf_counter() - started

    @property
    def outliers(self) -> list[tuple[int, str]]:
        """(node, reason) of each reply the screen dropped, in partition order."""
        return [(node, reason) for _, node, reason in sorted(self._outliers)]

    @property
    def answered(self) -> list[int]:
        """The partitions of every valid reply, the screened ones included."""
        return sorted([r.partition_id for r in self._replies] + [p for p, _, _ in self._outliers])

    @property
    def scores(self) -> list[float]:
        """The outlier score of each folded reply, in partition order."""
        return [self._scores[p] for p in sorted(self._scores)]

    @property
    def replies(self) -> list[ClientReply]:
        """The valid replies' facts (no spaces), in partition order."""
        return sorted(self._replies, key=lambda r: r.partition_id)

    def evaluate(self, round_number: int) -> RoundOutcome:
        """Score the merged space as ``evaluate_round`` does where ``client-scores`` is off."""
        setup, replies = self.setup, self.replies
        aggregation, probes = setup.config.aggregation, setup.probes
        started = time.perf_counter()
        merged = self.merged.result()
        check_merged(aggregation, merged, len(probes.labels), len(replies), False)
        merged_at = time.perf_counter()
        metrics: dict[str, Any] = {
            "merged_accuracy": probes.accuracy(merged),
            "client_partitions": [r.partition_id for r in replies],
            "client_accuracy": [],
            "stitched_accuracy": [],
            "stitched_own_classes_accuracy": [],
            "stitched_other_classes_accuracy": [],
            "concat_accuracy": None,
        }
        metrics |= {key: probes.accuracy(self._owned(key, merged, len(replies))) for key in OWNER_KEYS}
        if setup.expected.local_test:
            metrics |= local_test_scores(replies)
        metrics["server_merge_seconds"] = self.fold_seconds + merged_at - started  # folding as replies came, and the result
        metrics["server_scoring_seconds"] = time.perf_counter() - merged_at
        return RoundOutcome(metrics | round_facts(replies, round_number), merged, None)  # no central: streams_round

    def _owned(self, key: str, merged: Tensor, clients: int) -> Tensor:
        """The owner merge ``key``: each class's rows merged over its owners; ``merged``'s where it has none."""
        owned = merged.clone()
        for c, merge in self.by_class[key].items():
            owned[self.by_label[self.rows[c]]] = merge.result()
        check_merged(self.setup.config.aggregation, owned, len(merged), clients, True)
        return owned
