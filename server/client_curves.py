"""What each client gets out of the federation, round by round: the curve of
``results.json``, the report's per-round table and the figure read it.

Per round and per client it gathers what the rounds already record: the client's
own space on the evaluation samples (``client_accuracy``), its own model on its
held-back local test rows (``client_local_test_accuracy``, with ``local-test-fraction``),
and the merged head stitched onto it, on the classes it trained on and on the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from relatlas.clients import protocol
from relatlas.server.replies import ClientReply

# per-client lists of a round that the curve follows, in the report's order
CLIENT_KEYS = (
    "client_accuracy",
    "client_local_test_accuracy",
    "stitched_own_classes_accuracy",
    "stitched_other_classes_accuracy",
)
ROUND_KEYS = ("merged_accuracy", "average_client_test_accuracy")  # one number a round


def local_test_scores(replies: Sequence[ClientReply]) -> dict[str, Any]:
    """Each client's own model on its held-back rows, and their mean: the
    heterogeneous-FL "average client test accuracy" (clients that answered, unweighted)."""
    scores = [reply.metrics[protocol.LOCAL_TEST_ACCURACY] for reply in replies]
    return {"client_local_test_accuracy": scores, "average_client_test_accuracy": float(np.mean(scores))}


def client_curves(rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The round-by-round curve: ``rounds`` (their numbers), each of ``ROUND_KEYS``
    as one value a round, and per client (keyed by partition) each of ``CLIENT_KEYS``
    the rounds recorded as one value a round, ``None`` where the client did not answer."""
    partitions = sorted({p for r in rounds for p in r.get("client_partitions", [])})
    recorded = [key for key in CLIENT_KEYS if any(r.get(key) for r in rounds)]
    return {
        "rounds": [r["round"] for r in rounds],
        **{key: [r.get(key) for r in rounds] for key in ROUND_KEYS if any(key in r for r in rounds)},
        "clients": {str(p): {key: [_client_value(r, key, p) for r in rounds] for key in recorded} for p in partitions},
    }


def _client_value(metrics: Mapping[str, Any], key: str, partition: int) -> float | None:
    """Partition ``partition``'s entry of the round's list ``key``; None if it has none."""
    partitions, values = metrics.get("client_partitions", []), metrics.get(key) or []
    return values[partitions.index(partition)] if partition in partitions and len(values) == len(partitions) else None
