import dataclasses

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from relatlas.clients import protocol
from relatlas.server.exchange import validate
from relatlas.server.replies import Expected, ReplyError, parse_anchoring, parse_reply


@pytest.fixture(autouse=True)
def task_identity():
    """Flower stamps messages with the running task's identity; give this process one."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1


EXPECTED = Expected(
    similarities=("cosine",), num_samples=6, num_anchors=4, num_partitions=3, absolute=True, embedding_dim=8,
    partition_sizes=(100, 100, 100),
)  # fmt: skip


def _request() -> Message:
    return Message(RecordDict({protocol.TASK: ConfigRecord({"round": 1})}), dst_node_id=7, message_type=protocol.TRAIN)


def _reply(relative=None, absolute=None, metrics=None, drop=()) -> Message:
    records = {
        protocol.RELATIVE: ArrayRecord({"cosine": Array(np.zeros((6, 4), np.float32) if relative is None else relative)}),
        protocol.ABSOLUTE: ArrayRecord({protocol.SAMPLES: Array(np.zeros((6, 8), np.float32) if absolute is None else absolute)}),
        protocol.METRICS: MetricRecord({"partition-id": 1, "num-examples": 50} if metrics is None else metrics),
    }
    return Message(RecordDict({k: v for k, v in records.items() if k not in drop}), reply_to=_request())


def test_valid_reply_is_converted():
    reply = parse_reply(_reply(), EXPECTED)
    assert reply.partition_id == 1 and reply.num_examples == 50
    assert reply.spaces["cosine"].shape == (6, 4) and reply.absolute.shape == (6, 8)
    assert reply.payload_bytes == 6 * 4 * 4


def test_half_precision_payload_counts_half_the_bytes():
    assert parse_reply(_reply(relative=np.zeros((6, 4), np.float16)), EXPECTED).payload_bytes == 6 * 4 * 2


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"drop": (protocol.RELATIVE,)}, "lacks record 'relative'"),
        ({"relative": np.zeros((6, 3), np.float32)}, r"shape \(6, 3\); expected \(6, 4\)"),
        ({"relative": np.full((6, 4), np.nan, np.float32)}, "NaN or infinite"),
        ({"relative": np.zeros((6, 4), np.int64)}, "dtype int64"),
        ({"relative": np.zeros((300, 200), np.float32)}, "holds 240,464 bytes; this round's limit is 37,344"),
        ({"metrics": {"partition-id": 1, "num-examples": 50, "pad": [0.5] * 5000}}, "holds 40,560 bytes; this round"),
        ({"relative": np.zeros((6, 4), np.float64)}, "dtype float64; expected float32 or float16"),
        ({"relative": np.full((6, 4), 3e38, np.float32)}, r"values in \[3e\+38, 3e\+38\]; expected \[-1, 1\]"),
        ({"relative": np.full((6, 4), 1.5, np.float32)}, r"expected \[-1, 1\]"),
        ({"metrics": {"partition-id": 1, "num-examples": 1e15}}, r"num-examples must be an integer in \[1, 100\]"),
        ({"metrics": {"partition-id": 1, "num-examples": 50, "m" * 600: 1.0}}, "is not 1-250 letters"),
        ({"metrics": {"partition-id": 1, "num-examples": 50, "train-seconds": float("inf")}}, "'train-seconds' holds a value"),
        ({"metrics": {"partition-id": 1, "num-examples": 50, "pad": [0.5] * 4095}}, "metrics hold 4,097 numbers"),
        ({"absolute": np.zeros((5, 8), np.float32)}, "absolute embeddings have shape"),
        ({"drop": (protocol.ABSOLUTE,)}, "lacks the absolute embeddings"),
        ({"metrics": {"partition-id": 3, "num-examples": 5}}, "partition-id 3.0 is not one of"),
        ({"metrics": {"partition-id": 0, "num-examples": 0}}, "num-examples must be an integer in"),
    ],
)
def test_invalid_replies_are_refused_with_a_reason(fields, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_reply(_reply(**fields), EXPECTED)


def _smuggling(record: str, content) -> Message:
    """A valid reply with an extra array named ``content`` in ``record``, or an extra record ``content``."""
    reply = _reply()
    if isinstance(content, str):
        reply.content[record][content] = Array(np.zeros((6, 4), np.float32))
    elif content is not None:
        reply.content[record] = content
    return reply


@pytest.mark.parametrize(
    ("record", "content", "expected", "reason"),
    [
        (protocol.RELATIVE, "cosine-copy", EXPECTED, r"relative holds arrays \['cosine-copy'\] beyond \['cosine'\]"),
        (protocol.ABSOLUTE, "more", EXPECTED, r"absolute holds arrays \['more'\] beyond \['samples'\]"),
        ("extra", ArrayRecord({"x": Array(np.zeros(3, np.float32))}), EXPECTED, r"holds records \['extra'\]"),
        ("notes", ConfigRecord({"text": "hi"}), EXPECTED, r"holds records \['notes'\] beyond"),
        (None, None, dataclasses.replace(EXPECTED, absolute=False), r"holds records \['absolute'\] beyond"),
    ],
)
def test_an_extra_array_or_record_drops_the_reply(record, content, expected, reason):
    """Before, anything beyond what the server reads was kept silently."""
    with pytest.raises(ReplyError, match=reason):
        parse_reply(_smuggling(record, content), expected)


def test_client_error_is_reduced_to_one_line():
    raw = "<'\x1b[36mray::ClientAppActor.run()\x1b[39m (pid=1)\n  File x\nRuntimeError: disk full\n\nflwr.X: \nException Foo'>"
    failed = Message(Error(code=2, reason=raw), reply_to=_request())
    with pytest.raises(ReplyError, match="^client failed: RuntimeError: disk full$"):
        parse_reply(failed, EXPECTED)


def test_validate_keeps_good_replies_and_lists_failures():
    duplicate = _reply()
    broken = _reply(relative=np.full((6, 4), np.inf, np.float32))
    impostor = _reply(metrics={"partition-id": 0, "num-examples": 9})  # node 7 is bound to partition 1
    replies, failures = validate([_reply(), duplicate, broken, impostor], EXPECTED, 2, parse_reply, {7: 1})
    assert [(r.node_id, r.partition_id) for r in replies] == [(7, 1)]
    assert [f["round"] for f in failures] == [2, 2, 2]
    assert "already answered" in failures[0]["reason"] and "NaN or infinite" in failures[1]["reason"]
    assert failures[2]["reason"] == "claims partition-id 0; the server assigned it 1"


BOOTSTRAPPED = dataclasses.replace(EXPECTED, anchors_mode="bootstrapped", num_seeds=2)
TRANSLATED = dataclasses.replace(EXPECTED, anchors_mode="translated", num_seeds=2)


def _anchoring(arrays: dict[str, np.ndarray]) -> Message:
    metrics = MetricRecord({"partition-id": 2, "num-examples": 50})
    anchoring = ArrayRecord({name: Array(a) for name, a in arrays.items()})
    return Message(RecordDict({protocol.METRICS: metrics, protocol.ANCHORING: anchoring}), reply_to=_request())


def test_valid_anchoring_replies_are_converted():
    gram = parse_anchoring(_anchoring({protocol.GRAM: np.eye(10, dtype=np.float32)}), BOOTSTRAPPED)
    assert gram.partition_id == 2 and gram.arrays[protocol.GRAM].shape == (10, 10) and gram.payload_bytes == 400
    seeds, anchors = np.zeros((2, 5), np.float32), np.zeros((4, 5), np.float32)
    embedded = parse_anchoring(_anchoring({protocol.SEEDS: seeds, protocol.ANCHORS: anchors}), TRANSLATED)
    assert embedded.arrays[protocol.ANCHORS].shape == (4, 5)


@pytest.mark.parametrize(
    ("expected", "arrays", "reason"),
    [
        (BOOTSTRAPPED, {protocol.GRAM: np.eye(3, 4, dtype=np.float32)}, "expected a square pool of 4 to 18 rows"),
        (BOOTSTRAPPED, {protocol.GRAM: np.eye(19, dtype=np.float32)}, "expected a square pool of 4 to 18 rows"),
        (BOOTSTRAPPED, {protocol.GRAM: 2 * np.eye(5, dtype=np.float32)}, r"values in \[0, 2\]; expected \[-1, 1\]"),
        (BOOTSTRAPPED, {"other": np.eye(5, dtype=np.float32)}, "lacks array 'gram'"),
        (TRANSLATED, {protocol.SEEDS: np.zeros((3, 5), np.float32), protocol.ANCHORS: np.zeros((4, 5), np.float32)}, "seeds"),
        (TRANSLATED, {protocol.SEEDS: np.zeros((2, 5), np.float32), protocol.ANCHORS: np.zeros((4, 6), np.float32)}, "anchors"),
        (BOOTSTRAPPED, {protocol.GRAM: np.eye(5, dtype=np.float32), "extra": np.eye(5, dtype=np.float32)}, r"arrays \['extra'\]"),
    ],
)
def test_invalid_anchoring_replies_are_refused_with_a_reason(expected, arrays, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_anchoring(_anchoring(arrays), expected)


def _sparse_reply(values: np.ndarray, indices: np.ndarray) -> Message:
    relative = ArrayRecord({"cosine.values": Array(values), "cosine.indices": Array(indices)})
    metrics = MetricRecord({"partition-id": 1, "num-examples": 50})
    return Message(RecordDict({protocol.RELATIVE: relative, protocol.METRICS: metrics}), reply_to=_request())


def test_sparse_payload_is_densified_and_counted_as_sent():
    values = np.full((6, 2), 0.5, np.float32)
    indices = np.tile(np.array([3, 0], np.int16), (6, 1))
    reply = parse_reply(_sparse_reply(values, indices), dataclasses.replace(EXPECTED, absolute=False, payload="topk:2"))
    assert reply.spaces["cosine"][:, [0, 3]].eq(0.5).all() and reply.spaces["cosine"][:, [1, 2]].eq(0).all()
    assert reply.payload_bytes == 6 * 2 * 4 + 6 * 2 * 2


@pytest.mark.parametrize(
    ("indices", "reason"),
    [
        (np.tile(np.array([4, 0], np.int16), (6, 1)), "distinct column indices in"),
        (np.tile(np.array([1, 1], np.int16), (6, 1)), "distinct column indices in"),
        (np.zeros((6, 2), np.float32), "must be an integer array"),
        (np.zeros((6, 3), np.int32), "has shapes"),
    ],
)
def test_bad_sparse_payloads_are_refused(indices, reason):
    with pytest.raises(ReplyError, match=reason):
        parse_reply(
            _sparse_reply(np.ones((6, 2), np.float32), indices), dataclasses.replace(EXPECTED, absolute=False, payload="topk:2")
        )


def test_payload_noise_widens_the_value_range_by_eight_sigma():
    noisy = dataclasses.replace(EXPECTED, payload_noise=0.05)
    assert parse_reply(_reply(relative=np.full((6, 4), 1.39, np.float32)), noisy).spaces["cosine"].max() > 1.3
    with pytest.raises(ReplyError, match=r"expected \[-1.4, 1.4\]"):
        parse_reply(_reply(relative=np.full((6, 4), 1.5, np.float32)), noisy)
