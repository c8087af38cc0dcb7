"""Zero-shot stitching: the measurements on synthetic spaces, then the suite on
digits (2 MLP seeds) with its MLflow runs, and the refusals of bad values."""

from __future__ import annotations

import dataclasses
import json

import mlflow
import numpy as np
import pytest
import torch

from relatlas.aggregation.projection import relative_projection
from relatlas.benchmarks.stitching import (
    SPACES,
    Embedded,
    fit_heads,
    linear_head,
    stitching_rows,
    stitching_summary,
    translation_rows,
)
from relatlas.benchmarks.stitching_suite import StitchingSuiteConfig, encoder_trial, run_stitching_suite, target_trial
from relatlas.benchmarks.stitching_training import RelativeClassifier, decoder_head
from relatlas.benchmarks.sweep import SweepResources
from relatlas.clients.training import TrainConfig, fit
from relatlas.server.cli import main
from relatlas.server.config import ConfigError
from tests.conftest import random_orthogonal


def _rotated_pair(clustered):
    """One space and the same space rotated and rescaled, rows shuffled so that the
    first 200 (training) and the last 100 (held out) hold every class: two encoders
    that learned the same thing, up to the invariances of the cosine relative space.
    Returns the two encoders, their training embeddings and the labels."""
    points, labels = clustered
    order = np.random.default_rng(0).permutation(len(labels))
    points, labels = points[order], labels[order]
    spaces = [points, 3.0 * points @ random_orthogonal(16, seed=1).float()]
    encoders = [Embedded(f"e{i}", "mlp", test=s[200:], anchors=s[:32]) for i, s in enumerate(spaces)]
    return encoders, [s[:200] for s in spaces], labels


def _heads(encoders, train, labels):
    return {e.name: fit_heads(t, e.anchors, labels[:200], 3, epochs=20, seed=0) for e, t in zip(encoders, train)}


def test_heads_move_between_relative_spaces_but_not_between_absolute_ones(clustered):
    encoders, train, labels = _rotated_pair(clustered)
    heads = _heads(encoders, train, labels)
    rows = [row for e in encoders for row in stitching_rows(encoders, e.name, heads[e.name], labels[200:])]
    assert [(r["encoder"], r["head"]) for r in rows] == [("e0", "e0"), ("e1", "e0"), ("e0", "e1"), ("e1", "e1")]
    summary = stitching_summary(rows)
    assert all(summary["spaces"][space]["own"] == 1.0 for space in SPACES)
    assert summary["relative_cross_accuracy"] == 1.0  # cosine: invariant to the rotation and the rescaling
    assert summary["spaces"]["euclidean"]["cross"] == 1.0  # row-standardised distances: invariant to both too
    assert summary["absolute_cross_accuracy"] < 0.9


def test_translation_recovers_a_rotated_space_and_its_head_accuracy(clustered):
    encoders, train, labels = _rotated_pair(clustered)
    target = encoders[1]
    probe = _heads(encoders, train, labels)[target.name]["absolute"]
    torch.manual_seed(0)
    linear = torch.nn.Linear(target.test.shape[1], 3)
    fit(linear, train[1], labels[:200], TrainConfig(epochs=20, seed=0))
    head = linear_head(linear)
    rows = translation_rows(encoders, target, head, probe, labels[200:], counts=(16, 32))
    assert [(r["source"], r["method"], r["anchors"]) for r in rows] == [
        ("e0", method, k) for k in (16, 32) for method in ("procrustes", "inversion")
    ]
    for row in rows:  # Procrustes standardises each dimension, which a rotation mixes: close, not exact
        assert row["probe_stitched_accuracy"] == row["probe_target_accuracy"] == 1.0 and row["centred_cosine"] > 0.95
        assert row["target_accuracy"] > 0.95 and row["stitched_accuracy"] >= row["target_accuracy"] - 0.02


def test_a_relatively_trained_decoder_reads_a_rotated_encoder_s_relative_space(clustered):
    points, labels = clustered
    embedder = torch.nn.Linear(16, 8)
    anchors = points[::10]
    model = RelativeClassifier(embedder, anchors, 3, seed=0)
    fit(model, points, labels, TrainConfig(epochs=20, seed=0))
    rotated = torch.nn.Sequential(embedder, torch.nn.Linear(8, 8, bias=False))
    rotated[1].weight.data = 3.0 * random_orthogonal(8, seed=1).float()
    with torch.no_grad():
        own, other = (relative_projection(e(points), e(anchors)) for e in (embedder, rotated))
    head = decoder_head(model)
    assert head.accuracy(own, labels) == head.accuracy(other, labels) == 1.0
    assert (head.correct(own, labels) == head.correct(other, labels)).all()
    assert torch.equal(RelativeClassifier(embedder, anchors, 3, seed=4).decoder[1].weight,
                       RelativeClassifier(embedder, anchors, 3, seed=4).decoder[1].weight)  # fmt: skip


def test_relative_training_brings_its_decoder_as_the_cosine_head(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = StitchingSuiteConfig(
        dataset="digits", seeds=(0, 1), epochs=5, training="relative", train_samples=0, anchors=64, translation_anchors=(16,),
        head_epochs=5, similarity_samples=100, tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    params = dataclasses.asdict(suite)
    trained = [encoder_trial(params | {"kind": "mlp", "encoder_seed": s}, None, 1, 0) | {"encoder": f"mlp-seed{s}", "kind": "mlp"}
               for s in (0, 1)]  # fmt: skip
    rows = target_trial(params | {"encoders": trained, "target": "mlp-seed0"}, None, 1, 0)["stitching"]
    own, cross = (next(r for r in rows if r["encoder"] == name) for name in ("mlp-seed0", "mlp-seed1"))
    assert own["cosine"] > 0.9 and cross["cosine"] > 0.8 and cross["absolute"] < 0.5
    with pytest.raises(ConfigError, match="training must be one of absolute, relative; got 'paper'"):
        StitchingSuiteConfig(training="paper")


def test_suite_on_digits_stitches_relative_spaces_far_better_than_absolute_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    suite = StitchingSuiteConfig(
        dataset="digits", seeds=(0, 1), epochs=10, train_samples=0, anchors=64, translation_anchors=(16, 64), head_epochs=20,
        similarity_samples=200, out_dir=str(tmp_path / "bench"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
    )  # fmt: skip
    results = run_stitching_suite(suite, SweepResources(cpus_per_trial=1))
    assert [e["encoder"] for e in results["encoders"]] == ["mlp-seed0", "mlp-seed1"]  # no CNN on 8x8 digits
    written = json.loads((tmp_path / "bench" / "stitching.json").read_text())
    assert (
        results["failures"] == []
        and written["summary"] == results["summary"]
        and written["translation"] == results["translation"]
    )
    summary = results["summary"]
    assert summary["own_accuracy"] > 0.85 and summary["relative_cross_accuracy"] > summary["absolute_cross_accuracy"] + 0.3
    assert len(results["stitching"]) == 4 and len(results["similarity"]) == 2 * 2
    translation = results["translation"]
    assert {(r["method"], r["anchors"]) for r in translation} == {(m, k) for m in ("procrustes", "inversion") for k in (16, 64)}
    assert len(translation) == 2 * 2 * 2
    keys = {
        "method",
        "anchors",
        "cosine",
        "stitched_accuracy",
        "target_accuracy",
        "probe_stitched_accuracy",
        "probe_target_accuracy",
    }
    assert all(keys <= set(r) for r in translation)
    relative = [r for r in results["similarity"] if r["space"] == "relative"]
    absolute = [r for r in results["similarity"] if r["space"] == "absolute"]
    assert min(r["mrr"] for r in relative) > max(r["mrr"] for r in absolute)
    table = (tmp_path / "bench" / "table.md").read_text()
    assert "| mlp-seed0 | mlp-seed1 |" in table and "| inversion | 64 |" in table
    assert "- skipped: cnn-seed0: the cnn needs [C, H, W] images with H = W >= 28, inputs here are (64,)" in table

    client = mlflow.MlflowClient(suite.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(suite.experiment).experiment_id])
    parent = next(run for run in runs if run.info.run_name == "bench-stitching-digits")
    children = sorted(run.info.run_name for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
    assert children == [f"{kind}mlp-seed{s}" for kind in ("heads-", "") for s in range(2)]
    assert parent.data.metrics["relative_cross_accuracy"] == pytest.approx(summary["relative_cross_accuracy"])
    assert {"table.md", "stitching.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "0"], "stitching needs at least 2 encoders, got 1"),
        (["--anchors", "32", "--translation-anchors", "16", "64"], "translation-anchors must be in [1, anchors = 32]"),
        (["--anchors", "2000", "--translation-anchors", "16"], "anchors (2000) must not exceed the training samples (1258)"),
        (["--seeds", "1", "1"], "seeds must be distinct"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--training", "paper"], "training must be one of absolute, relative; got 'paper'"),
    ],
)
def test_bad_values_are_refused_in_one_line_before_anything_runs(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "stitching", "--dataset", "digits", *args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("relatlas: ") and message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "runs").exists()
