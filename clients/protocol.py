"""The messages between the ServerApp and the ClientApps: plain arrays and
config values only, never pickles.

Server -> client, message type ``train``:
    ``task`` (ConfigRecord): the run-config keys in ``TASK_KEYS`` plus ``round``,
        ``partition-id`` (the partition the server bound this node to: its
        training rows), ``similarities`` (list of str), ``send-absolute`` (bool), ``run-key`` (the
        config hash, naming the client's saved state) and ``keep-state`` (bool:
        save it, a later round may resume from it; ``clients/checkpoint.py``)
        and, unless the anchors are shared, ``anchor-classes`` (list of int: the
        class of anchor i);
    ``inputs`` (ArrayRecord), raw inputs: ``samples`` [N, ...] to project and
        ``anchors``: the public anchors [m, ...] (``shared``), the K public seeds
        (``bootstrapped``, ``translated``), none (``class-matched``).
Client -> server, the final reply of a round:
    ``relative`` (ArrayRecord): one [N, m] float array per requested similarity
        (float32 or, with payload fp16, float16); with payload ``topk:K``, two
        [N, K] arrays per similarity instead, ``<name>.values`` (float) and
        ``<name>.indices`` (integer columns), see ``clients/payload.py``;
    ``absolute`` (ArrayRecord, only if asked): ``samples`` [N, d], the raw embeddings,
        for simulation-only baselines;
    ``metrics`` (MetricRecord): ``partition-id``, ``num-examples``, ``train-seconds``,
        ``embedding-dim`` and ``encoder-parameters`` (the client's encoder: clients may differ);
        static: ``train-loss``, ``train-accuracy``; continual: ``head-accuracy``
        (list: the local model's accuracy on each test experience so far) and
        Avalanche's evaluation metrics, each prefixed ``avalanche/``.

Anchor modes with two phases (see ``server/anchor_modes.py``) answer ``train`` with
``metrics`` and ``anchoring`` (ArrayRecord) instead: ``gram`` [K+P, K+P] for
``bootstrapped``; ``seeds`` [K, d] and ``anchors`` [m, d] embeddings for
``translated``. The server then sends message type ``query`` with the same task
plus ``anchor-indices`` (bootstrapped: the pool rows that are the anchors) or
``reference-partition`` (translated), and inputs ``samples``, ``anchors`` (the
seeds) and, translated, ``reference-seeds`` and ``reference-anchors``; the client
answers with the final reply above, without training again.
"""

from __future__ import annotations

TRAIN, QUERY = "train", "query"
TASK, INPUTS, RELATIVE, ABSOLUTE, METRICS, ANCHORING = "task", "inputs", "relative", "absolute", "metrics", "anchoring"
ANCHORS, SAMPLES, SEEDS, GRAM = "anchors", "samples", "seeds", "gram"
REFERENCE_SEEDS, REFERENCE_ANCHORS = "reference-seeds", "reference-anchors"
HEAD_ACCURACY, AVALANCHE_PREFIX = "head-accuracy", "avalanche/"
EMBEDDING_DIM, ENCODER_PARAMETERS = "embedding-dim", "encoder-parameters"

# The run-config keys a client needs to rebuild its data, train and anchor.
TASK_KEYS = (
    "dataset", "data-root", "split", "num-clients", "shared-classes", "novel-classes", "alpha",
    "anchors", "anchor-sampling", "anchors-mode", "seed-anchors", "translation", "payload", "payload-noise",
    "seed", "epochs", "batch-size", "learning-rate", "embedding-dim", "encoder",
    "scenario", "experiences", "stream", "strategy", "regularizer", "buffer",
    "casper-rho", "casper-classes", "casper-batch", "casper-k", "num-cpus", "plugins",
)  # fmt: skip
