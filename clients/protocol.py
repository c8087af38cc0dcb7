"""The messages between the ServerApp and the ClientApps: plain arrays and
config values only, never pickles.

Server -> client, message type ``train``:
    ``task`` (ConfigRecord): the run-config keys in ``TASK_KEYS`` plus ``round``,
        ``similarities`` (list of str) and ``send-absolute`` (bool);
    ``inputs`` (ArrayRecord): ``anchors`` [m, ...] and ``samples`` [N, ...], raw inputs.
Client -> server:
    ``relative`` (ArrayRecord): one [N, m] float array per requested similarity;
    ``absolute`` (ArrayRecord, only if asked): ``samples`` [N, d], the raw embeddings,
        for simulation-only baselines;
    ``metrics`` (MetricRecord): ``partition-id``, ``num-examples``, ``train-seconds``;
        static: ``train-loss``, ``train-accuracy``; continual: ``head-accuracy``
        (list: the local model's accuracy on each test experience so far) and
        Avalanche's evaluation metrics, each prefixed ``avalanche/``.
"""

from __future__ import annotations

TRAIN = "train"
TASK, INPUTS, RELATIVE, ABSOLUTE, METRICS = "task", "inputs", "relative", "absolute", "metrics"
ANCHORS, SAMPLES = "anchors", "samples"
HEAD_ACCURACY, AVALANCHE_PREFIX = "head-accuracy", "avalanche/"

# The run-config keys a client needs to rebuild its data and train.
TASK_KEYS = (
    "dataset", "data-root", "split", "num-clients", "shared-classes", "novel-classes", "alpha",
    "anchors", "anchor-sampling", "seed", "epochs", "batch-size", "learning-rate", "embedding-dim", "encoder",
    "scenario", "experiences", "stream", "strategy", "regularizer", "buffer",
    "casper-rho", "casper-classes", "casper-per-class", "casper-k",
)  # fmt: skip
