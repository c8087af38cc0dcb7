"""The messages between the ServerApp and the ClientApps: plain arrays and
config values only, never pickles; and the checks every received array passes.

Server -> client, message type ``train``:
    ``task`` (ConfigRecord): a ``Task`` (``clients/task.py``) as flat hyphenated
        keys: the run config's data, model, anchors, merge, continual and runtime
        keys, the round's facts (``round``, ``partition-id``, the partition the
        server bound this node to, ``similarities``, ``send-absolute``,
        ``run-key``, ``keep-state``) and the anchor mode's own entries (e.g.
        ``anchor-classes``: the class of anchor i), which the client decodes and
        checks as one typed object;
    ``inputs`` (ArrayRecord), raw inputs: ``samples`` [N, ...] to project and
        ``anchors``: the public anchors [m, ...] (``shared``), the K public seeds
        (``bootstrapped``, ``translated``), none (``class-matched``); each of them
        only until the client's reply shows it holds it;
    ``public`` (ConfigRecord): each public input's sha256 digest by name and, where
        the clients hold the run's dataset, its rows there (``<name>.test-rows``,
        ``<name>.train-rows``): a client takes an input not sent from its cache or
        its dataset, checked against the digest (``clients/public_inputs.py``).
    ``atlas`` (ArrayRecord, from round 2 of a run with ``atlas-weight`` > 0): ``rows``
        [P, D] float32, the merged relative space of the run's public pool (its P rows
        in the plan's order, D the width of the aggregation of one client), which the
        client checks by shape and finiteness before training on it
        (``clients/atlas_feedback.py``).
Client -> server, the final reply of a round:
    ``relative`` (ArrayRecord): one [N, m] float array per requested similarity
        (float32 or, with payload fp16, float16); with payload ``topk:K``, two
        [N, K] arrays per similarity instead, ``<name>.values`` (float) and
        ``<name>.indices`` (integer columns), see ``clients/payload.py``;
    ``public-relative`` (ArrayRecord, with ``atlas-weight`` > 0): one [P, m] float32
        array per requested similarity, the client's relative rows of the public pool;
    ``absolute`` (ArrayRecord, only if asked): ``samples`` [N, d], the raw embeddings,
        for simulation-only baselines;
    ``metrics`` (MetricRecord): ``partition-id``, ``num-examples``, ``train-seconds``,
        ``embedding-dim`` and ``encoder-parameters`` (the client's encoder: clients may differ);
        static: ``train-loss``, ``train-accuracy``; continual: ``head-accuracy``
        (list: the local model's accuracy on each test experience so far) and
        Avalanche's evaluation metrics, each prefixed ``avalanche/``.

Anchor modes with two phases (see ``clients/anchor_modes.py``) answer ``train`` with
``metrics`` and ``anchoring`` (ArrayRecord) instead: ``gram`` [K+P, K+P] for
``bootstrapped``; ``seeds`` [K, d] and ``anchors`` [m, d] embeddings for
``translated``. The server then sends message type ``query`` with the same task
plus the mode's entries ``anchor-indices`` (bootstrapped: the pool rows that are
the anchors) or ``reference-partition`` (translated), and inputs ``samples``, ``anchors`` (the
seeds) and, translated, ``reference-seeds`` and ``reference-anchors``; the client
answers with the final reply above, without training again.
"""

from __future__ import annotations

import math

import numpy as np
from flwr.app import ArrayRecord, RecordDict

TRAIN, QUERY = "train", "query"
TASK, INPUTS, RELATIVE, ABSOLUTE, METRICS, ANCHORING = "task", "inputs", "relative", "absolute", "metrics", "anchoring"
ANCHORS, SAMPLES, SEEDS, GRAM = "anchors", "samples", "seeds", "gram"
REFERENCE_SEEDS, REFERENCE_ANCHORS = "reference-seeds", "reference-anchors"
HEAD_ACCURACY, AVALANCHE_PREFIX = "head-accuracy", "avalanche/"
LOCAL_TEST_ACCURACY = "local-test-accuracy"  # a static client's own model on its held-back rows (clients/local_test.py)
EMBEDDING_DIM, ENCODER_PARAMETERS = "embedding-dim", "encoder-parameters"
ATLAS, ATLAS_ROWS, PUBLIC_RELATIVE = "atlas", "rows", "public-relative"
PUBLIC = "public"  # the public inputs a message names by digest (clients/public_inputs.py)

ALLOWED_DTYPES = (np.float32, np.float16)  # what payloads fp32, fp16 and topk send
ROUNDING = 1e-3  # slack on a similarity's value range, for float16 rounding


def message_bytes(content: RecordDict) -> int:
    """What a message's records weigh (arrays, config and metric values and their keys): its size on the wire but framing."""
    arrays = sum(record.count_bytes() for record in content.array_records.values())
    configs = [*content.config_records.values(), *content.metric_records.values()]
    return arrays + sum(len(key) + _value_bytes(value) for record in configs for key, value in record.items())


def _value_bytes(value: object) -> int:
    """As Flower's ``count_bytes`` counts a config value (numbers 8 bytes, booleans 1), an empty string included."""
    if isinstance(value, list):
        return sum(_value_bytes(item) for item in value)
    return len(value) if isinstance(value, (str, bytes)) else 1 if isinstance(value, bool) else 8


class ReplyError(ValueError):
    """Why a reply was dropped, in one line."""


def float_array(record: ArrayRecord, key: str, what: str, value_range: tuple[float, float] = (-math.inf, math.inf)) -> np.ndarray:
    """A float32 or float16 array of finite values within ``value_range`` (up to rounding)."""
    if key not in record:
        raise ReplyError(f"{what} lacks array {key!r}; has {sorted(record.keys())}")
    if record[key].dtype not in ("float32", "float16"):
        raise ReplyError(f"{what}[{key!r}] has dtype {record[key].dtype}; expected float32 or float16")
    try:
        array = record[key].numpy()
    except Exception as err:  # noqa: BLE001 - any decoding failure is the client's fault
        raise ReplyError(f"{what}[{key!r}] cannot be decoded: {err}") from None
    if array.dtype not in ALLOWED_DTYPES:
        raise ReplyError(f"{what}[{key!r}] has dtype {array.dtype}; expected float32 or float16")
    if not np.isfinite(array).all():
        raise ReplyError(f"{what}[{key!r}] holds NaN or infinite values")
    low, high = value_range
    if array.size and (array.min() < low - ROUNDING or array.max() > high + ROUNDING):
        raise ReplyError(f"{what}[{key!r}] holds values in [{array.min():.4g}, {array.max():.4g}]; expected [{low:g}, {high:g}]")
    return array
