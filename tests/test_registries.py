"""A user's entry registers the way the built-ins do, and the code path that
names it finds it: similarities, aggregations, datasets, payload codecs, splits,
streams, continual strategies and regularisers."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch

from relatlas.aggregation.aggregators import aggregate, register_aggregation, required_similarities
from relatlas.aggregation.projection import relative_projection
from relatlas.aggregation.similarities import Similarity
from relatlas.benchmarks.datasets import Dataset, DatasetError, load_dataset
from relatlas.benchmarks.splits import Split, SplitError, class_plan, plan_federation
from relatlas.clients.payload import payload_codec
from relatlas.registries import AGGREGATIONS, DATASETS, PAYLOADS, REGULARIZERS, SIMILARITIES, SPLITS, STRATEGIES, STREAMS
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.replies import Expected, ReplyError, parse_reply

CONVERTED = (SIMILARITIES, AGGREGATIONS, DATASETS, PAYLOADS, SPLITS, STREAMS, STRATEGIES, REGULARIZERS)


@pytest.fixture(autouse=True)
def scratch_registries(monkeypatch):
    """Every converted registry as it is, restored after the test: what a test registers does not outlive it."""
    for registry in CONVERTED:
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
    yield
    load_dataset.cache_clear()


def test_a_user_similarity_is_projected_and_bounds_the_reply_values():
    SIMILARITIES.register("dot", Similarity(lambda a: a, lambda x, a: x @ a.T, (-math.inf, math.inf)))
    x, anchors = torch.randn(7, 3), torch.randn(4, 3)
    torch.testing.assert_close(relative_projection(x, anchors, "dot", block_elements=8), x @ anchors.T)
    expected = Expected(similarities=("dot",), num_samples=7, num_anchors=4, num_partitions=1, absolute=False)
    assert expected.value_range("dot") == (-math.inf, math.inf)


def test_a_user_aggregation_merges_and_is_a_valid_run_config():
    @register_aggregation("max-cosine")
    def max_cosine(spaces, weights, masks):
        return torch.stack([space["cosine"] for space in spaces]).amax(dim=0)

    spaces = [{"cosine": torch.tensor([[0.25, 0.75]])}, {"cosine": torch.tensor([[0.5, 0.125]])}]
    assert aggregate("max-cosine", spaces).tolist() == [[0.5, 0.75]]
    assert AGGREGATIONS.get("max-cosine").merge is max_cosine and required_similarities("max-cosine") == ("cosine",)
    assert RunConfig(aggregation="max-cosine").aggregation == "max-cosine"
    with pytest.raises(ConfigError, match=r"aggregation must be one of mean, .*, max-cosine; got 'nope'$"):
        RunConfig(aggregation="nope")


def test_the_product_merge_needs_the_subspaces_it_declares():
    spaces = [{name: torch.rand(3, 2) for name in required_similarities("product")}]
    aggregate("product", spaces)
    del spaces[0]["linf"]
    with pytest.raises(ValueError, match="missing \\['linf'\\]"):
        aggregate("product", spaces)


def test_a_user_dataset_is_loaded_with_its_argument_root_and_seed():
    calls = []

    @DATASETS.register("tiny")
    def tiny(argument: str, *, root: str | None, seed: int) -> Dataset:
        calls.append((argument, root, seed))
        n = int(argument)
        x, y = np.eye(n, dtype=np.float32), np.arange(n) % 2
        return Dataset("tiny", x, y, x, y)

    data = load_dataset("tiny:6", "/data", 3)
    assert calls == [("6", "/data", 3)] and data.x_train.shape == (6, 6) and data.num_classes == 2
    assert not data.x_train.flags.writeable
    DATASETS.register("broken", lambda argument, *, root, seed: (np.zeros(2), np.zeros(2)))
    with pytest.raises(DatasetError, match="returned tuple; a dataset loader must return a Dataset"):
        load_dataset("broken")


class Int8Codec:
    """A codec unknown to the server's reply checks: cosines quantised to int8."""

    def encode(self, spaces: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: (space * 127).round().to(torch.int8).numpy() for name, space in spaces.items()}

    def decode(self, record: Mapping[str, Any], similarity, shape, value_range, floats) -> tuple[torch.Tensor, int]:
        array = record[similarity].numpy()
        if array.dtype != np.int8 or array.shape != shape:
            raise ValueError(f"relative[{similarity!r}] must be int8 {shape}; got {array.dtype} {array.shape}")
        return torch.from_numpy(array.astype(np.float32) / 127), array.nbytes

    def check(self, similarities: tuple[str, ...], num_anchors: int) -> None:
        if similarities != ("cosine",):
            raise ValueError("payload int8 carries cosines only")


def test_a_user_payload_codec_is_validated_encoded_and_decoded_by_the_server():
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from relatlas.clients import protocol

    PAYLOADS.register("int8", lambda argument: Int8Codec())
    assert RunConfig(payload="int8").payload == "int8"
    with pytest.raises(ConfigError, match="^payload int8 carries cosines only$"):
        RunConfig(payload="int8", aggregation="product")
    cosines = torch.tensor([[1.0, -0.5], [0.0, 0.25]])
    arrays = payload_codec("int8").encode({"cosine": cosines})
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    request = Message(RecordDict({protocol.TASK: ConfigRecord({"round": 1})}), dst_node_id=7, message_type=protocol.TRAIN)

    def reply(relative: dict[str, np.ndarray]) -> Message:
        records = {
            protocol.RELATIVE: ArrayRecord({name: Array(array) for name, array in relative.items()}),
            protocol.METRICS: MetricRecord({"partition-id": 0, "num-examples": 5}),
        }
        return Message(RecordDict(records), reply_to=request)

    expected = Expected(("cosine",), num_samples=2, num_anchors=2, num_partitions=1, absolute=False, payload="int8")
    parsed = parse_reply(reply(arrays), expected)
    torch.testing.assert_close(parsed.spaces["cosine"], cosines, atol=1 / 127, rtol=0)
    assert parsed.payload_bytes == 4
    with pytest.raises(ReplyError, match="must be int8"):
        parse_reply(reply({"cosine": cosines.numpy()}), expected)
    with pytest.raises(ReplyError, match="'cosine'] cannot be decoded as payload int8: KeyError"):
        parse_reply(reply({"l1": arrays["cosine"]}), expected)


def _halves(order: list[int], num_clients: int, shared: int, novel: int | None):
    every = tuple(sorted(order))
    return every, (every,) * num_clients


def test_a_user_split_plans_the_federation():
    SPLITS.register("halves", Split(_halves, lambda members, holders, is_shared, alpha, rng: np.array_split(members, holders)))
    labels = np.repeat(np.arange(3), 10)
    plan = plan_federation(labels, "halves", 2, num_anchors=6, seed=0)
    dealt = np.concatenate(plan.client_indices)
    assert sorted(dealt.tolist() + plan.anchor_indices.tolist()) == list(range(30))
    assert len(set(dealt.tolist())) == len(dealt) and plan.client_classes == ((0, 1, 2), (0, 1, 2))
    assert RunConfig(split="halves").split == "halves"


def test_a_user_stream_schedules_experiences():
    from relatlas.benchmarks.streams import Stream, class_schedule, experience_rows

    def one_class_each(num_classes: int, experiences: int, seed: int):
        return tuple((c,) for c in reversed(range(num_classes)))[:experiences]

    STREAMS.register("one-class-each", Stream(one_class_each, lambda labels, schedule, seed: tuple(
        np.flatnonzero(labels == classes[0]) for classes in schedule
    )))  # fmt: skip
    schedule = class_schedule(3, 3, "one-class-each", 0)
    assert schedule == ((2,), (1,), (0,))
    assert [rows.tolist() for rows in experience_rows(np.array([0, 2, 1, 2]), schedule, "one-class-each", 0)] == [
        [1, 3],
        [2],
        [0],
    ]
    assert RunConfig(scenario="continual", stream="one-class-each").stream == "one-class-each"


def test_a_user_strategy_and_regularizer_are_built():
    from avalanche.core import SupervisedPlugin
    from avalanche.training import Naive

    from relatlas.clients.continual import build_strategy
    from relatlas.clients.continual_config import ContinualConfig

    marker = SupervisedPlugin()

    @STRATEGIES.register("plain")
    def plain(model, optimizer, config, **common):
        return Naive(model=model, optimizer=optimizer, **common)

    REGULARIZERS.register("marked", lambda config, *, seed: [marker])
    learner = build_strategy(torch.nn.Linear(4, 2), ContinualConfig(strategy="plain", regularizer="marked"), seed=0)
    assert isinstance(learner, Naive) and marker in learner.plugins
    assert RunConfig(strategy="plain", regularizer="marked").strategy == "plain"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: relative_projection(torch.ones(1, 2), torch.ones(1, 2), "dice"), ValueError,
         "unknown similarity 'dice'; registered: cosine, euclidean, l1, linf"),
        (lambda: aggregate("mode", []), ValueError,
         "unknown aggregation 'mode'; registered: mean, product, product-sum, product-learned, product-weighted, concat, median, "
         "trimmed-mean, krum, multi-krum"),
        (lambda: load_dataset("imagenet:x"), DatasetError,
         "unknown dataset 'imagenet'; registered: digits, fashion-mnist, mnist, cifar10, npz, imagefolder, csv, jsonl, wordnet"),
        (lambda: payload_codec("zip:9"), ValueError, "unknown payload 'zip'; registered: fp32, fp16, topk"),
        (lambda: class_plan(4, "random", 2, shared=0, novel=None, seed=0), SplitError,
         "unknown split 'random'; registered: shared-classes, same-classes, disjoint-classes, dirichlet, iid"),
        (lambda: RunConfig(stream="shuffled"), ConfigError,
         "stream must be one of class-incremental, new-instances; got 'shuffled'"),
        (lambda: RunConfig(strategy="gem"), ConfigError, "strategy must be one of naive, replay, er-ace, der; got 'gem'"),
        (lambda: RunConfig(regularizer="ewc"), ConfigError, "regularizer must be one of none, casper; got 'ewc'"),
    ],
)  # fmt: skip
def test_an_unknown_name_gets_one_line_listing_the_registered_names(call, error, message):
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message


def test_reading_the_run_config_does_not_import_avalanche():
    script = "import sys, relatlas.server.config; print('avalanche' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
