"""Validation of client replies: a reply becomes a ``ClientReply`` or a
one-line ``ReplyError`` reason; nothing a client sends can crash the server.

Checked before anything is decoded: the records asked for and no others, and the
reply's size (arrays, metrics and config values). Then no array beyond those the
server reads (nothing a client sends is kept unchecked), and what the values
mean: float32 or float16 arrays only (a float64 value beyond float32's range would become
infinite on conversion), finite, each similarity within its value range
(the registered ``Similarity.value_range``, so cosines within [-1, 1]); the sample
count at most the partition's training samples; metric names that MLflow
accepts and finite values. A partition answered by two nodes keeps neither
answer beyond the first; ``server/strategy.py`` binds partitions to nodes."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Message, RecordDict
from torch import Tensor

from relatlas.clients import protocol
from relatlas.clients.payload import payload_codec
from relatlas.clients.protocol import ReplyError, float_array
from relatlas.registries import ANCHOR_MODES, SIMILARITIES

HEADER_SLACK = 4096  # bytes of array headers and metrics on the wire, beyond the values
NOISE_SIGMAS = 8  # and for --payload-noise: a Gaussian entry beyond 8 sigma has odds of about 1e-15
METRIC_NAME = re.compile(r"^[\w\-./ ]{1,250}$")  # what MLflow accepts as a metric name
MAX_METRIC_VALUES = 4096  # numbers in a reply's metrics, lists included


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
    public: dict[str, Tensor] | None = None  # its relative spaces of the public pool, in a run with atlas feedback


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
    partition_sizes: tuple[int, ...] = ()  # training samples of each partition, the ceiling of num-examples
    payload_noise: float = 0.0  # the sigma clients add to their relative spaces
    payload: str = "fp32"  # the codec clients pack their relative spaces with (``clients/payload.py``)
    local_test: bool = False  # clients score their own model on held-back rows (``clients/local_test.py``)
    public_samples: int = 0  # public-pool rows each client projects too (atlas feedback), in float32

    def value_range(self, similarity: str) -> tuple[float, float]:
        """What a client's dense values of ``similarity`` may hold, noise included."""
        low, high = SIMILARITIES.get(similarity).value_range
        slack = NOISE_SIGMAS * self.payload_noise
        return low - slack, high + slack

    @property
    def max_projection_bytes(self) -> int:
        """The most bytes a final reply may hold: float32 values and int64 indices
        for every anchor of every similarity, absolute embeddings in float32, metrics."""
        relative = self.num_samples * self.num_anchors * 12 * len(self.similarities)
        public = self.public_samples * self.num_anchors * 4 * len(self.similarities)
        return relative + public + (self.num_samples * self.embedding_dim * 4 if self.absolute else 0) + _METRICS_BYTES


_METRICS_BYTES = HEADER_SLACK + 8 * MAX_METRIC_VALUES


@dataclass(frozen=True)
class AnchoringReply:
    """A validated first-phase reply of a two-phase anchor mode (``clients/anchor_modes.py``)."""

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


def _content(message: Message, records: tuple[str, ...], max_bytes: int, optional: tuple[str, ...] = ()) -> RecordDict:
    """The reply's records, if it is not an error, holds every one of ``records``,
    none beyond them and ``optional``, and no more than ``max_bytes`` in all
    (checked before anything is decoded)."""
    if message.has_error():
        raise ReplyError(error_reason(message))
    for name in records:
        if name not in message.content:
            raise ReplyError(f"reply lacks record {name!r}; has {sorted(message.content.keys())}")
    allowed = {*records, *optional}
    extra = sorted(set(message.content.keys()) - allowed)
    if extra:
        raise ReplyError(f"reply holds records {_names(extra)} beyond those asked for ({', '.join(sorted(allowed))})")
    size = _size(message.content)
    if size > max_bytes:
        raise ReplyError(f"reply holds {size:,} bytes; this round's limit is {max_bytes:,}")
    return message.content


def _only_arrays(record, names: set[str], what: str) -> None:
    """Refuse arrays in ``record`` beyond ``names``, the ones the server read."""
    extra = sorted(set(record.keys()) - names)
    if extra:
        raise ReplyError(f"{what} holds arrays {_names(extra)} beyond {sorted(names)}")


def _names(names: list[str]) -> list[str]:
    """A client's names as a short line: the first five, each cut at 40 characters."""
    return [name[:40] for name in names[:5]]


def _size(content: RecordDict) -> int:
    """Bytes of every record: array data, and 8 per number or character of metrics and config values."""
    arrays = sum(len(array.data) for record in content.array_records.values() for array in record.values())
    values = [v for records in (content.metric_records, content.config_records) for r in records.values() for v in r.values()]
    return arrays + 8 * sum(len(v) if isinstance(v, (list, str, bytes)) else 1 for v in values)


def _metrics(content: RecordDict) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The reply's metrics, numbers and lists of numbers apart; names MLflow accepts,
    finite values, at most ``MAX_METRIC_VALUES`` numbers."""
    record = content[protocol.METRICS]
    count = sum(len(v) if isinstance(v, list) else 1 for v in record.values())
    if count > MAX_METRIC_VALUES:
        raise ReplyError(f"metrics hold {count:,} numbers; at most {MAX_METRIC_VALUES:,}")
    for key, value in record.items():
        if not METRIC_NAME.match(key):
            raise ReplyError(f"metric name {key[:40]!r}... is not 1-250 letters, digits, spaces or _-./")
        numbers = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
            raise ReplyError(f"metric {key!r} holds a value that is not a finite number")
    scalars = {key: float(value) for key, value in record.items() if not isinstance(value, list)}
    return scalars, {key: [float(v) for v in value] for key, value in record.items() if isinstance(value, list)}


def parse_reply(message: Message, expected: Expected) -> ClientReply:
    """Check a reply against ``expected`` and convert it; raise ``ReplyError`` if invalid."""
    asked = ((protocol.ABSOLUTE,) if expected.absolute else ()) + ((protocol.PUBLIC_RELATIVE,) if expected.public_samples else ())
    content = _content(message, (protocol.RELATIVE, protocol.METRICS), expected.max_projection_bytes, asked)
    spaces, payload = {}, 0
    for similarity in expected.similarities:
        spaces[similarity], size = _relative_space(content[protocol.RELATIVE], similarity, expected)
        payload += size
    _only_arrays(content[protocol.RELATIVE], _sent_arrays(expected), protocol.RELATIVE)  # after: a missing one is named first
    absolute = None
    if expected.absolute:
        if protocol.ABSOLUTE not in content:
            raise ReplyError("reply lacks the absolute embeddings asked for")
        _only_arrays(content[protocol.ABSOLUTE], {protocol.SAMPLES}, protocol.ABSOLUTE)
        embeddings = float_array(content[protocol.ABSOLUTE], protocol.SAMPLES, protocol.ABSOLUTE)
        if embeddings.ndim != 2 or embeddings.shape[0] != expected.num_samples:
            raise ReplyError(f"absolute embeddings have shape {embeddings.shape}; expected ({expected.num_samples}, d)")
        absolute = torch.from_numpy(embeddings.astype(np.float32))
    public = _public_spaces(content, expected)
    metrics, lists = _metrics(content)
    partition = _partition(metrics, expected)
    num_examples = metrics.get("num-examples", 0.0)
    ceiling = expected.partition_sizes[partition] if expected.partition_sizes else math.inf
    if not (num_examples.is_integer() and 1 <= num_examples <= ceiling):
        raise ReplyError(
            f"num-examples must be an integer in [1, {ceiling:g}] (the partition's training samples); got {num_examples:g}"
        )
    _check_local_test(metrics, expected)
    public_bytes = sum(space.numel() * 4 for space in (public or {}).values())
    return ClientReply(
        message.metadata.src_node_id, partition, spaces, absolute, int(num_examples), metrics, payload + public_bytes, lists,
        public,
    )  # fmt: skip


def _public_spaces(content: RecordDict, expected: Expected) -> dict[str, Tensor] | None:
    """The client's [P, m] relative spaces of the public pool, where the run asks for them."""
    if not expected.public_samples:
        return None
    if protocol.PUBLIC_RELATIVE not in content:
        raise ReplyError(f"reply lacks record {protocol.PUBLIC_RELATIVE!r}, the public pool's relative spaces")
    record = content[protocol.PUBLIC_RELATIVE]
    _only_arrays(record, set(expected.similarities), protocol.PUBLIC_RELATIVE)
    spaces = {}
    for similarity in expected.similarities:
        array = float_array(record, similarity, protocol.PUBLIC_RELATIVE, expected.value_range(similarity))
        if array.shape != (expected.public_samples, expected.num_anchors):
            shape = (expected.public_samples, expected.num_anchors)
            raise ReplyError(f"{protocol.PUBLIC_RELATIVE}[{similarity!r}] has shape {array.shape}; expected {shape}")
        spaces[similarity] = torch.from_numpy(array.astype(np.float32))
    return spaces


def _check_local_test(metrics: dict[str, float], expected: Expected) -> None:
    """A run that holds back local test rows needs each client's accuracy on them, a share in [0, 1]."""
    if not expected.local_test:
        return
    accuracy = metrics.get(protocol.LOCAL_TEST_ACCURACY)
    if accuracy is None:
        raise ReplyError(f"reply lacks metric {protocol.LOCAL_TEST_ACCURACY!r}, asked for by local-test-fraction")
    if not 0 <= accuracy <= 1:
        raise ReplyError(f"metric {protocol.LOCAL_TEST_ACCURACY!r} is {accuracy:g}; an accuracy lies in [0, 1]")


def _relative_space(record, similarity: str, expected: Expected) -> tuple[Tensor, int]:
    """One subspace as a dense [N, m] float32 tensor, and the bytes it took on the wire,
    decoded by the run's payload codec (``clients/payload.py``)."""
    codec = payload_codec(expected.payload)
    shape = (expected.num_samples, expected.num_anchors)

    def floats(key: str, value_range: tuple[float, float]) -> np.ndarray:
        return float_array(record, key, protocol.RELATIVE, value_range)

    try:
        return codec.decode(record, similarity, shape, expected.value_range(similarity), floats)
    except ValueError as err:  # ReplyError included: one line either way
        raise ReplyError(str(err)) from None
    except Exception as err:  # noqa: BLE001 - a reply its codec cannot read is the client's fault
        reason = f"{type(err).__name__}: {err}"
        raise ReplyError(f"relative[{similarity!r}] cannot be decoded as payload {expected.payload}: {reason}") from None


def _sent_arrays(expected: Expected) -> set[str]:
    """The names of the arrays a client's codec sends for the round's similarities (a
    codec names its arrays in ``encode``; one row of zeros asks it)."""
    row = torch.zeros(1, expected.num_anchors)
    return set(payload_codec(expected.payload).encode(dict.fromkeys(expected.similarities, row)))


def _partition(metrics: dict[str, float], expected: Expected) -> int:
    partition = metrics.get("partition-id", -1.0)
    if not (partition.is_integer() and 0 <= partition < expected.num_partitions):
        raise ReplyError(f"partition-id {partition} is not one of the run's {expected.num_partitions} clients")
    return int(partition)


def parse_anchoring(message: Message, expected: Expected) -> AnchoringReply:
    """Check a first-phase reply of a two-phase anchor mode (the mode checks its
    ``anchoring`` arrays); raise ``ReplyError`` if invalid."""
    mode = ANCHOR_MODES.get(expected.anchors_mode)
    content = _content(message, (protocol.ANCHORING, protocol.METRICS), mode.first_reply_bytes(expected) + _METRICS_BYTES)
    metrics, _ = _metrics(content)
    partition = _partition(metrics, expected)
    arrays = mode.first_reply_arrays(content[protocol.ANCHORING], expected)
    _only_arrays(content[protocol.ANCHORING], set(arrays), protocol.ANCHORING)
    tensors = {name: torch.from_numpy(array.astype(np.float32)) for name, array in arrays.items()}
    return AnchoringReply(message.metadata.src_node_id, partition, tensors, sum(a.nbytes for a in arrays.values()))
