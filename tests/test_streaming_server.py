"""The streaming merge in the server: a round that streams folds each reply as it is pulled and drops it,
with the numbers of the batch merge; one that cannot stream (per-client scores) is merged at once, and says so."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord
from flwr.supercore.task_identity import TaskIdentity

from relatlas.aggregation.aggregators import aggregate
from relatlas.aggregation.screening import outlier_scores
from relatlas.aggregation.streaming import honest_spaces
from relatlas.server.exchange import exchange, validate
from relatlas.server.federation import run_federation
from relatlas.server.local_grid import LocalGrid
from relatlas.server.replies import ClientReply, parse_reply
from relatlas.server.run_setup import RunSetup
from relatlas.server.strategy import RelativeStrategy
from relatlas.server.streaming_round import RoundMerge
from tests.conftest import TIMINGS, small_run_config
from tests.hostile_clients import ATTACKS

SMALL = {"eval-samples": 200, "simulation-baselines": False, "epochs": 1, "probe-epochs": 5, "round-timeout": 60.0}


@pytest.fixture(autouse=True)
def serverapp_identity(tmp_path, monkeypatch):
    """What Flower's ServerApp runtime sets before messages are made; runs write under ``tmp_path``."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 1)):
        monkeypatch.setattr(TaskIdentity, name, value)


def _round(tmp_path, clients: int = 3, **overrides):
    """A strategy that has sent round 1 to ``clients`` in-process clients, and their reply messages."""
    config = small_run_config(tmp_path, **SMALL | {"num-clients": clients, "client-scores": False} | overrides)
    grid = LocalGrid(clients, tmp_path / "state")
    strategy = RelativeStrategy(config)
    messages = list(strategy.configure_train(1, ArrayRecord(), ConfigRecord(), grid))
    return strategy, exchange(grid, messages, config.round_timeout)


def test_a_streamed_round_has_the_batch_merge_and_scores(tmp_path):
    strategy, replies = _round(tmp_path, **{"merge-weights": "samples"})
    assert strategy.streams
    strategy.aggregate_train(1, iter(replies))
    streamed = strategy.outcome
    valid, _ = validate(replies, strategy.setup.expected, 1, parse_reply, strategy.partitions)
    batch = strategy.setup.evaluate(valid, 1)
    torch.testing.assert_close(streamed.merged, batch.merged, rtol=0, atol=1e-6)
    for key in ("merged_accuracy", "owner_accuracy", "owner_shuffled_accuracy", "client_partitions", "payload_bytes_per_client"):
        assert streamed.metrics[key] == batch.metrics[key], key
    assert streamed.metrics["merge_streamed"] is True
    assert streamed.metrics["client_outlier_score"] == outlier_scores([r.spaces for r in valid])


def test_arrival_order_does_not_change_the_streamed_merge(tmp_path):
    strategy, replies = _round(tmp_path, 4, aggregation="product")
    strategy.aggregate_train(1, replies)
    first = strategy.outcome
    strategy.aggregate_train(1, list(reversed(replies)))
    second = strategy.outcome
    torch.testing.assert_close(first.merged, second.merged, rtol=0, atol=1e-6)
    assert {k: v for k, v in first.metrics.items() if k not in TIMINGS} == {
        k: v for k, v in second.metrics.items() if k not in TIMINGS
    }


def test_a_streamed_round_holds_no_reply_it_has_merged(tmp_path):
    strategy, replies = _round(tmp_path, 4)
    pulled = []  # weak references to the replies handed out so far

    def arriving():
        for reply in replies:
            gc.collect()
            assert all(ref() is None for ref in pulled[:-1]), "a merged reply is still held"
            arrived = copy.deepcopy(reply)  # the only strong reference is the strategy's, once yielded
            pulled.append(weakref.ref(arrived))
            yield arrived
            del arrived

    strategy.aggregate_train(1, arriving())
    assert len(pulled) == 4 and strategy.outcome.metrics["clients_answered"] == 4
    gc.collect()
    assert all(ref() is None for ref in pulled)


def test_an_invalid_reply_in_a_streamed_round_is_dropped_with_its_reason(tmp_path):
    strategy, replies = _round(tmp_path, 4)
    ATTACKS["scaled-x1000"](replies[1])  # cosines far outside [-1, 1]
    strategy.aggregate_train(1, iter(replies))
    [failure] = strategy.failures
    assert failure["node"] == replies[1].metadata.src_node_id and "cosine" in failure["reason"]
    assert strategy.outcome.metrics["clients_answered"] == 3 and strategy.outcome.metrics["merge_streamed"] is True


def test_the_streamed_screen_drops_what_the_batch_screen_drops(tmp_path):
    strategy, replies = _round(tmp_path, 4, **{"outlier-threshold": 3.0})
    ATTACKS["uniform-random"](replies[2])  # made-up cosines, in range
    assert strategy.streams
    strategy.aggregate_train(1, iter(replies))
    [failure] = strategy.failures
    assert failure["node"] == replies[2].metadata.src_node_id and failure["reason"].startswith("outlier:")
    assert strategy.outcome.metrics["client_partitions"] == [0, 1, 3]


def test_past_the_first_replies_each_is_screened_against_them(tmp_path):
    """Replies 1-16 are screened together; the 17th and later against their median space and typical distance."""
    config = small_run_config(
        tmp_path, **SMALL | {"num-clients": 18, "split": "same-classes", "client-scores": False, "outlier-threshold": 3.0}
    )
    setup = RunSetup.prepare(config)
    shape = (len(setup.labels), config.anchors)
    _, spaces = honest_spaces(18, *shape, spread=0.05, seed=0)
    liar = {"cosine": torch.rand(shape, generator=torch.Generator().manual_seed(1)) * 2 - 1}
    spaces[3], spaces[17] = liar, dict(liar)  # one among the first 16, one after them
    merge = RoundMerge(setup, range(18))
    for partition, space in enumerate(spaces):
        merge.add(ClientReply(200 + partition, partition, space, None, 10, {}, 0))
    merge.finish()
    assert [node for node, _ in merge.outliers] == [203, 217]
    honest = [space for p, space in enumerate(spaces) if p not in (3, 17)]
    assert [r.partition_id for r in merge.replies] == [p for p in range(18) if p not in (3, 17)]
    assert max(merge.scores) < 3.0 and all(not r.spaces for r in merge.replies)  # the folded spaces are not kept
    torch.testing.assert_close(merge.merged.result(), aggregate("mean", honest), rtol=0, atol=1e-6)


def test_a_declared_hostile_count_the_streamed_merge_cannot_withstand_stops_the_round(tmp_path):
    strategy, replies = _round(tmp_path, 3, aggregation="trimmed-mean", **{"max-hostile": 1})
    assert strategy.streams
    with pytest.raises(Exception, match="max-hostile 1"):
        strategy.aggregate_train(1, iter(replies[:2]))  # two left cannot withstand one hostile


def test_streamed_and_batch_runs_merge_to_the_same_numbers_and_say_which_they_were(tmp_path):
    """Per-client scores need every client's space at once: that run is merged in a batch, the other streamed."""
    runs = {}
    for scores in (False, True):
        config = small_run_config(tmp_path / str(scores), **SMALL | {"rounds": 1, "client-scores": scores})
        runs[scores] = run_federation(LocalGrid(3, tmp_path / str(scores) / "state"), config)
    streamed, batch = runs[False], runs[True]
    assert streamed["status"] == batch["status"] == "completed"
    assert streamed["rounds"][0]["merge_streamed"] is True and batch["rounds"][0]["merge_streamed"] is False
    assert streamed["client_outlier_score"] == batch["client_outlier_score"] and len(batch["client_outlier_score"]) == 3
    for key in ("merged_accuracy", "owner_accuracy", "owner_shuffled_accuracy"):
        assert streamed[key] == batch[key], key
