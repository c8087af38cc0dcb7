"""Validation of client replies: a reply becomes a ``ClientReply`` or a
one-line ``ReplyError`` reason; nothing a client sends can crash the server."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Message, RecordDict
from torch import Tensor

from aggregation.sparse import densify
from clients import protocol
from clients.anchoring import CANDIDATES_PER_ANCHOR
from clients.payload import INDICES, VALUES

ALLOWED_DTYPES = (np.float32, np.float16, np.float64)
HEADER_SLACK = 4096  # bytes of array headers on the wire, beyond the values


class ReplyError(ValueError):
    """Why a reply was dropped, in one line."""


@dataclass(frozen=True)
class ClientReply:
    """A validated reply: the client's relative subspaces over the round's samples."""

    node_id: int
    partition_id: int
    spaces: dict[str, Tensor]
    absolute: Tensor | None
    num_examples: int
    metrics: dict[str, float]
    payload_bytes: int
    lists: dict[str, list[float]] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Expected:
    """What a valid reply of this round must hold."""

    similarities: tuple[str, ...]
    num_samples: int
    num_anchors: int
    num_partitions: int
    absolute: bool
    anchors_mode: str = "shared"
    num_seeds: int = 0  # public seeds of the two-phase anchor modes
    embedding_dim: int = 0

    @property
    def max_projection_bytes(self) -> int:
        """The most array bytes a final reply may hold: float64 values and int64
        indices for every anchor of every similarity, absolute embeddings in float64."""
        relative = self.num_samples * self.num_anchors * 16 * len(self.similarities)
        return relative + (self.num_samples * self.embedding_dim * 8 if self.absolute else 0) + HEADER_SLACK

    @property
    def max_anchoring_bytes(self) -> int:
        """The most array bytes a first-phase reply may hold, in float64."""
        pool = self.num_seeds + CANDIDATES_PER_ANCHOR * self.num_anchors
        return 8 * max(pool * pool, (self.num_seeds + self.num_anchors) * self.embedding_dim) + HEADER_SLACK


@dataclass(frozen=True)
class AnchoringReply:
    """A validated first-phase reply of a two-phase anchor mode (``clients/anchoring.py``)."""

    node_id: int
    partition_id: int
    arrays: dict[str, Tensor]
    payload_bytes: int


def error_reason(message: Message) -> str:
    """The client's own exception from a failed reply's traceback, e.g. ``RuntimeError: boom``."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", message.error.reason or "")
    lines = [line.strip(" '\">") for line in text.splitlines() if line.strip(" '\">")]
    raised = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): \S", line)]  # "RuntimeError: boom"
    reason = raised[0] if raised else (lines[-1] if lines else f"error code {message.error.code}")
    return f"client failed: {reason[:300]}"


def _array(record, key: str, what: str) -> np.ndarray:
    if key not in record:
        raise ReplyError(f"{what} lacks array {key!r}; has {sorted(record.keys())}")
    try:
        array = record[key].numpy()
    except Exception as err:  # noqa: BLE001 - any decoding failure is the client's fault
        raise ReplyError(f"{what}[{key!r}] cannot be decoded: {err}") from None
    if array.dtype not in ALLOWED_DTYPES:
        raise ReplyError(f"{what}[{key!r}] has dtype {array.dtype}; expected a float array")
    if not np.isfinite(array).all():
        raise ReplyError(f"{what}[{key!r}] holds NaN or infinite values")
    return array


def _content(message: Message, records: tuple[str, ...], max_bytes: int) -> RecordDict:
    """The reply's records, if it is not an error, holds every one of ``records``
    and no more than ``max_bytes`` of arrays (checked before anything is decoded)."""
    if message.has_error():
        raise ReplyError(error_reason(message))
    for name in records:
        if name not in message.content:
            raise ReplyError(f"reply lacks record {name!r}; has {sorted(message.content.keys())}")
    size = sum(len(array.data) for record in message.content.array_records.values() for array in record.values())
    if size > max_bytes:
        raise ReplyError(f"reply holds {size:,} bytes of arrays; this round's limit is {max_bytes:,}")
    return message.content


def parse_reply(message: Message, expected: Expected) -> ClientReply:
    """Check a reply against ``expected`` and convert it; raise ``ReplyError`` if invalid."""
    content = _content(message, (protocol.RELATIVE, protocol.METRICS), expected.max_projection_bytes)
    spaces, payload = {}, 0
    for similarity in expected.similarities:
        spaces[similarity], size = _relative_space(content[protocol.RELATIVE], similarity, expected)
        payload += size
    absolute = None
    if expected.absolute:
        if protocol.ABSOLUTE not in content:
            raise ReplyError("reply lacks the absolute embeddings asked for")
        embeddings = _array(content[protocol.ABSOLUTE], protocol.SAMPLES, protocol.ABSOLUTE)
        if embeddings.ndim != 2 or embeddings.shape[0] != expected.num_samples:
            raise ReplyError(f"absolute embeddings have shape {embeddings.shape}; expected ({expected.num_samples}, d)")
        absolute = torch.from_numpy(embeddings.astype(np.float32))
    metrics = {key: float(value) for key, value in content[protocol.METRICS].items() if isinstance(value, (int, float))}
    lists = {key: [float(v) for v in value] for key, value in content[protocol.METRICS].items() if _finite_list(value)}
    partition = _partition(metrics, expected)
    num_examples = metrics.get("num-examples", 0.0)
    if not (num_examples.is_integer() and num_examples >= 1):
        raise ReplyError(f"num-examples must be a positive integer; got {num_examples}")
    return ClientReply(message.metadata.src_node_id, partition, spaces, absolute, int(num_examples), metrics, payload, lists)


def _relative_space(record, similarity: str, expected: Expected) -> tuple[Tensor, int]:
    """One subspace as a dense [N, m] float32 tensor, and the bytes it took on the wire;
    dense, or top-k sparse (``clients/payload.py``)."""
    shape = (expected.num_samples, expected.num_anchors)
    if similarity + VALUES not in record:
        array = _array(record, similarity, protocol.RELATIVE)
        if array.shape != shape:
            raise ReplyError(f"relative[{similarity!r}] has shape {array.shape}; expected {shape}")
        return torch.from_numpy(array.astype(np.float32)), array.nbytes
    values = _array(record, similarity + VALUES, protocol.RELATIVE)
    key = similarity + INDICES
    indices = record[key].numpy() if key in record else None
    if indices is None or indices.dtype not in (np.int16, np.int32, np.int64):
        raise ReplyError(f"relative[{key!r}] must be an integer array beside relative[{similarity + VALUES!r}]")
    rows, k = values.shape if values.ndim == 2 else (-1, -1)
    if rows != expected.num_samples or not 1 <= k <= expected.num_anchors or indices.shape != values.shape:
        raise ReplyError(f"sparse relative[{similarity!r}] has shapes {values.shape}, {indices.shape}; expected ({shape[0]}, k)")
    ordered = np.sort(indices, axis=1)
    if ordered[:, 0].min() < 0 or ordered[:, -1].max() >= expected.num_anchors or (np.diff(ordered, axis=1) == 0).any():
        raise ReplyError(f"relative[{key!r}] must hold distinct column indices in [0, {expected.num_anchors})")
    dense = densify(torch.from_numpy(values.astype(np.float32)), torch.from_numpy(indices.astype(np.int64)), shape[1])
    return dense, values.nbytes + indices.nbytes


def _partition(metrics: dict[str, float], expected: Expected) -> int:
    partition = metrics.get("partition-id", -1.0)
    if not (partition.is_integer() and 0 <= partition < expected.num_partitions):
        raise ReplyError(f"partition-id {partition} is not one of the run's {expected.num_partitions} clients")
    return int(partition)


def parse_anchoring(message: Message, expected: Expected) -> AnchoringReply:
    """Check a first-phase reply: a bootstrapping pool's cosine Gram matrix, or a
    translating client's seed and anchor embeddings; raise ``ReplyError`` if invalid."""
    content = _content(message, (protocol.ANCHORING, protocol.METRICS), expected.max_anchoring_bytes)
    metrics = {key: float(value) for key, value in content[protocol.METRICS].items() if isinstance(value, (int, float))}
    partition, record = _partition(metrics, expected), content[protocol.ANCHORING]
    if expected.anchors_mode == "bootstrapped":
        gram = _array(record, protocol.GRAM, protocol.ANCHORING)
        largest = expected.num_seeds + CANDIDATES_PER_ANCHOR * expected.num_anchors
        if gram.ndim != 2 or gram.shape[0] != gram.shape[1] or not expected.num_anchors <= len(gram) <= largest:
            raise ReplyError(f"gram has shape {gram.shape}; expected a square pool of {expected.num_anchors} to {largest} rows")
        if np.abs(gram).max() > 1.0 + 1e-3:
            raise ReplyError("gram holds values outside [-1, 1]; expected cosine similarities")
        arrays = {protocol.GRAM: gram}
    else:
        seeds = _array(record, protocol.SEEDS, protocol.ANCHORING)
        anchors = _array(record, protocol.ANCHORS, protocol.ANCHORING)
        if seeds.ndim != 2 or seeds.shape[0] != expected.num_seeds or anchors.shape != (expected.num_anchors, seeds.shape[1]):
            raise ReplyError(
                f"seeds {seeds.shape}, anchors {anchors.shape}; expected ({expected.num_seeds}, d), ({expected.num_anchors}, d)"
            )
        arrays = {protocol.SEEDS: seeds, protocol.ANCHORS: anchors}
    tensors = {name: torch.from_numpy(array.astype(np.float32)) for name, array in arrays.items()}
    return AnchoringReply(message.metadata.src_node_id, partition, tensors, sum(a.nbytes for a in arrays.values()))


def _finite_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
