"""Atlas feedback: the merged relative space of a public pool goes back to the
clients. Without it (``atlas-weight 0``) a run gives today's numbers (to float tolerance); with
it the atlas arrives from round 2 and trains the clients through the registered
objective, a user's included; bad input is refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, Context, RecordDict
from sklearn.datasets import load_digits

from relatlas.aggregation import atlas_objectives
from relatlas.aggregation.measures import neighbour_label_agreement
from relatlas.benchmarks.datasets import load_dataset
from relatlas.benchmarks.feedback_suite import FeedbackSuiteConfig, run_feedback_suite, with_gains
from relatlas.benchmarks.splits import SplitError, plan_federation
from relatlas.benchmarks.sweep import SweepResources
from relatlas.clients import protocol
from relatlas.clients.atlas_feedback import AtlasError, received_atlas
from relatlas.clients.checkpoint import STATE_DIR_KEY
from relatlas.clients.client_app import MODEL_STATE, train
from relatlas.clients.task import Task
from relatlas.registries import ATLAS_OBJECTIVES
from relatlas.server.atlas import Atlas, make_atlas
from relatlas.server.config import CHOICES, ConfigError, RunConfig
from relatlas.server.federation import run_federation
from relatlas.server.local_grid import LocalGrid
from relatlas.server.run_setup import RunSetup
from tests.conftest import as_recorded, small_run_config

SMALL = {"eval-samples": 200, "simulation-baselines": False, "rounds": 2, "epochs": 1, "probe-epochs": 5, "round-timeout": 60.0}
# results.json of this run on main before atlas feedback existed (commit 109a866), to the last digit
TODAY = [
    {
        "merged_accuracy": 0.48333333333333334,
        "client_accuracy": [0.5166666666666667, 0.5666666666666667, 0.4166666666666667],
        "client_outlier_score": [1.0, 1.5034118997281185, 0.4359640966862435],
        "payload_bytes_per_client": 50944.0,
    },
    {
        "merged_accuracy": 0.5,
        "client_accuracy": [0.5333333333333333, 0.6166666666666667, 0.4666666666666667],
        "client_outlier_score": [1.0, 1.6178739634493597, 0.5654205387036455],
        "payload_bytes_per_client": 50944.0,
    },
]


class RecordingGrid(LocalGrid):
    """The in-process grid, keeping every message sent and every reply."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.sent, self.answers = [], []

    def push_messages(self, messages):
        messages = list(messages)
        self.sent += messages
        ids = super().push_messages(messages)
        self.answers += [self.replies[i] for i in ids if i in self.replies]
        return ids


def test_atlas_weight_zero_gives_todays_numbers(tmp_path):
    grid = RecordingGrid(3, tmp_path / "state")
    results = run_federation(grid, small_run_config(tmp_path, **SMALL | {"atlas-weight": 0.0}))
    assert [{key: r[key] for key in TODAY[0]} for r in results["rounds"]] == as_recorded(TODAY)
    assert not any(protocol.ATLAS in m.content for m in grid.sent)
    assert not any(protocol.PUBLIC_RELATIVE in m.content for m in grid.answers)


def test_the_atlas_arrives_from_round_2_and_trains_through_a_users_objective(tmp_path, monkeypatch):
    monkeypatch.setattr(ATLAS_OBJECTIVES, "_entries", dict(ATLAS_OBJECTIVES._entries))
    calls = []

    @ATLAS_OBJECTIVES.register("counted")
    def counted(own_rows, atlas_rows, **options):
        calls.append((own_rows.shape, atlas_rows.shape, options["embeddings"].requires_grad))
        return atlas_objectives.neighbourhood(own_rows, atlas_rows, **options)

    pool = {"public-pool": 128}
    grid = RecordingGrid(3, tmp_path / "fed")
    config = small_run_config(tmp_path, **SMALL | pool | {"atlas-weight": 1.0, "atlas-objective": "counted"})
    results = run_federation(grid, config)
    assert results["status"] == "completed" and results["failures"] == []
    first, second = grid.sent[:3], grid.sent[3:]
    assert not any(protocol.ATLAS in m.content for m in first)
    assert all(m.content[protocol.ATLAS][protocol.ATLAS_ROWS].numpy().shape == (128, 64) for m in second)
    assert len(calls) == sum(math.ceil(len(rows) / 64) for rows in _partitions(config))  # every step of round 2 pulled
    assert {call[:2] for call in calls} == {(torch.Size([64, 64]), torch.Size([64, 64]))} and all(c[2] for c in calls)
    # round 1 trains as a run without feedback on the same plan; round 2 differs
    plain = run_federation(RecordingGrid(3, tmp_path / "plain"), small_run_config(tmp_path / "p", **SMALL | pool))
    assert results["rounds"][0]["client_outlier_score"] == plain["rounds"][0]["client_outlier_score"]
    assert results["rounds"][1]["client_outlier_score"] != plain["rounds"][1]["client_outlier_score"]


def test_a_leave_one_out_atlas_sends_each_client_the_merge_of_the_others(tmp_path):
    grid = RecordingGrid(3, tmp_path / "fed")
    config = small_run_config(tmp_path, **SMALL | {"public-pool": 128, "atlas-weight": 1.0, "atlas-leave-one-out": True})
    results = run_federation(grid, config)
    assert results["failures"] == []
    partition = {m.metadata.dst_node_id: Task.from_record(m.content[protocol.TASK]).partition_id for m in grid.sent[:3]}
    pools = {partition[m.metadata.dst_node_id]: a.content[protocol.PUBLIC_RELATIVE]["cosine"].numpy()
             for m, a in zip(grid.sent[:3], grid.answers[:3])}  # fmt: skip
    for message in grid.sent[3:]:
        own = partition[message.metadata.dst_node_id]
        others = np.mean([rows for p, rows in pools.items() if p != own], axis=0)
        np.testing.assert_allclose(message.content[protocol.ATLAS][protocol.ATLAS_ROWS].numpy(), others, rtol=1e-5, atol=1e-6)
    # round 1's neighbour agreement: the merge of all three, and each client's own rows, against the pool's labels
    setup = RunSetup.prepare(config)
    labels = torch.as_tensor(setup.dataset.y_train[setup.plan.public_indices])
    first = results["rounds"][0]
    merged = torch.from_numpy(np.mean(list(pools.values()), axis=0))
    assert first["atlas_neighbour_agreement"] == pytest.approx(neighbour_label_agreement(merged, labels))
    assert first["client_pool_neighbour_agreement"] == pytest.approx(
        [neighbour_label_agreement(torch.from_numpy(pools[p]), labels) for p in sorted(pools)]
    )


def test_an_atlas_leaves_out_only_the_partitions_that_replied():
    pools = [{"cosine": torch.full((4, 3), float(i))} for i in range(3)]
    atlas = make_atlas("mean", pools, [5, 6, 7], [1, 1, 2], None, leave_one_out=True)
    assert atlas.for_partition(5)[protocol.ATLAS_ROWS].numpy() == pytest.approx(np.full((4, 3), 5 / 3))  # (1*1 + 2*2) / 3
    assert atlas.for_partition(9)[protocol.ATLAS_ROWS].numpy() == pytest.approx(np.full((4, 3), 5 / 4))  # all: (0+1+4) / 4
    alone = make_atlas("mean", pools[:1], [5], None, None, leave_one_out=True)
    assert alone.for_partition(5) is alone.merged  # no other client to merge: its own rows


def _partitions(config: RunConfig) -> tuple[np.ndarray, ...]:
    return RunSetup.prepare(config).plan.client_indices


@pytest.mark.usefixtures("flower_task_identity")
def test_a_client_refuses_a_bad_atlas_before_training(tmp_path):
    config = small_run_config(tmp_path, **SMALL | {"public-pool": 128, "atlas-weight": 1.0})
    setup = RunSetup.prepare(config)
    bad = ArrayRecord({protocol.ATLAS_ROWS: Array(np.zeros((128, 7), dtype=np.float32))})
    message = setup.train_messages({101: 0}, 2, Atlas(bad))[0]
    context = Context(0, 101, {STATE_DIR_KEY: str(tmp_path / "state")}, RecordDict(), {})
    with pytest.raises(AtlasError, match=r"atlas has shape \(128, 7\); this client's public pool and merge make \(128, 64\)"):
        train(message, context)
    assert MODEL_STATE not in context.state  # nothing trained on it


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({protocol.ATLAS_ROWS: np.zeros((5, 4), dtype=np.float32)}, r"atlas has shape \(5, 4\)"),
        ({protocol.ATLAS_ROWS: np.full((6, 4), np.nan, dtype=np.float32)}, "NaN or infinite"),
        ({protocol.ATLAS_ROWS: np.zeros((6, 4), dtype=np.float64)}, "dtype float64"),
        ({"other": np.zeros((6, 4), dtype=np.float32)}, "atlas holds arrays"),
        ({}, "atlas lacks array 'rows'"),
    ],
)
def test_a_bad_atlas_message_is_refused_in_one_line(arrays, message):
    content = RecordDict({protocol.ATLAS: ArrayRecord({k: Array(v) for k, v in arrays.items()})})
    with pytest.raises(AtlasError, match=message) as refused:
        received_atlas(content, 6, 4)
    assert "\n" not in str(refused.value)


def test_a_message_without_atlas_trains_as_today():
    assert received_atlas(RecordDict({}), 6, 4) is None


@pytest.mark.parametrize("weight", [-1.0, math.nan, math.inf])
def test_an_atlas_weight_negative_or_not_finite_is_refused(weight):
    with pytest.raises(ConfigError, match="atlas-weight must be") as refused:
        RunConfig(atlas_weight=weight, public_pool=128)
    assert "\n" not in str(refused.value)
    with pytest.raises(ConfigError, match="atlas-weight must be"):
        RunConfig.from_mapping({"atlas-weight": weight, "public-pool": 128})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"atlas-weight": 1.0}, "atlas-weight 1 needs a public pool to make the atlas of: set public-pool"),
        ({"public-pool": 10}, r"public-pool 10 is too small: at least the anchors \(64\) and one batch"),
        ({"public-pool": 64, "batch-size": 100}, r"public-pool 64 is too small: .* \(batch-size 100\)"),
        ({"public-pool": 128, "atlas-weight": 1.0, "aggregation": "concat"}, "concat gives 64 columns for one client, 192"),
        ({"public-pool": 128, "atlas-weight": 1.0, "anchors-mode": "translated"}, "needs anchors-mode shared"),
        ({"public-pool": 128, "atlas-leave-one-out": True}, "atlas-leave-one-out needs atlas-weight > 0"),
        (
            {
                "public-pool": 128,
                "atlas-weight": 1.0,
                "atlas-leave-one-out": True,
                "aggregation": "median",
                "num-clients": 3,
                "max-hostile": 1,
            },
            "atlas-leave-one-out with max-hostile 1",
        ),
    ],
)
def test_a_pool_or_a_run_the_atlas_does_not_fit_is_refused(values, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_mapping(values)


def test_a_pool_larger_than_the_training_rows_is_refused():
    with pytest.raises(SplitError, match="public-pool 5000 leaves no training rows to the clients"):
        plan_federation(load_dataset("digits", None, 0).y_train, "shared-classes", 3, num_anchors=64, shared=4, public_pool=5000)


def test_a_public_pool_that_overlaps_the_evaluation_samples_is_refused(tmp_path):
    digits = load_digits()
    x, y = (digits.data / 16).astype(np.float32), digits.target
    np.savez(tmp_path / "leaky.npz", X=x, y=y, X_test=x[:600], y_test=y[:600])  # the test set copies training rows
    config = small_run_config(tmp_path, dataset=f"npz:{tmp_path / 'leaky.npz'}", **{"public-pool": 300, "eval-samples": 0})
    with pytest.raises(
        ConfigError, match=r"the public pool overlaps the evaluation samples: pool row \d+ equals evaluation sample"
    ):
        RunSetup.prepare(config)


def test_a_pool_leaves_the_plan_without_it_untouched_but_for_its_rows():
    labels = load_dataset("digits", None, 0).y_train
    plain = plan_federation(labels, "shared-classes", 3, num_anchors=64, shared=4, seed=3)
    pooled = plan_federation(labels, "shared-classes", 3, num_anchors=64, shared=4, seed=3, public_pool=200)
    assert len(pooled.public_indices) == 200 and not np.isin(pooled.public_indices, plain.anchor_indices).any()
    np.testing.assert_array_equal(pooled.anchor_indices, plain.anchor_indices)
    for before, after in zip(plain.client_indices, pooled.client_indices):
        np.testing.assert_array_equal(after, np.setdiff1d(before, pooled.public_indices))


@pytest.mark.parametrize("name", ATLAS_OBJECTIVES.names())
def test_every_objective_is_zero_or_least_on_the_atlas_and_pulls_towards_it(name):
    generator = torch.Generator().manual_seed(0)
    atlas = torch.randn(16, 8, generator=generator)
    own = torch.randn(16, 8, generator=generator, requires_grad=True)
    logits = torch.randn(16, 5, generator=generator)
    objective = ATLAS_OBJECTIVES.get(name)
    away = objective(own, atlas, embeddings=own, logits=logits)
    at = objective(atlas, atlas, embeddings=atlas, logits=logits)
    assert torch.isfinite(away) and at < away
    away.backward()
    assert own.grad is not None and own.grad.abs().sum() > 0


def test_the_registry_lists_the_objectives_in_the_config_choices():
    assert CHOICES["atlas_objective"] is ATLAS_OBJECTIVES
    with pytest.raises(ConfigError, match="atlas-objective must be one of"):
        RunConfig(atlas_objective="nope")


def test_the_feedback_bench_compares_each_objective_with_no_feedback_on_the_same_plan(tmp_path):
    suite = FeedbackSuiteConfig(
        objectives=("mse",), seeds=(0,), public_pool=128, rounds=2, eval_samples=200, probe_epochs=5,
        out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    records = run_feedback_suite(suite, SweepResources(), in_process=True)
    assert [(r["objective"], r["weight"]) for r in records] == [("none", 0.0), ("mse", 1.0)]
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "| digits | none | 0.0 |" in table and "least client gain" in table
    gains = with_gains(records)[1]
    assert gains["least gain"] == min(a - b for a, b in zip(records[1]["client_accuracy"], records[0]["client_accuracy"]))
