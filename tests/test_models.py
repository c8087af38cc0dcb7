import numpy as np
import pytest
import torch

from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, derive_seed, fit, predict


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_initialisation_depends_on_the_seed_only():
    first = build_classifier((64,), 10, seed=3)
    torch.rand(1000)  # whatever else ran in this process
    assert torch.equal(_weights(first), _weights(build_classifier((64,), 10, seed=3)))
    assert not torch.equal(_weights(first), _weights(build_classifier((64,), 10, seed=4)))


def test_auto_encoder_picks_cnn_for_images_and_mlp_otherwise():
    assert isinstance(build_classifier((1, 28, 28), 10).embedder[0], torch.nn.Conv2d)
    assert isinstance(build_classifier((1, 8, 8), 10).embedder[1], torch.nn.Linear)
    assert predict(build_classifier((3, 32, 32), 10).embedder, np.zeros((2, 3, 32, 32))).shape == (2, 64)
    with pytest.raises(ValueError, match=r"cnn encoder needs \[C, H, W\] images with H = W >= 28, got input shape \(1, 8, 8\)"):
        build_classifier((1, 8, 8), 10, encoder="cnn")
    with pytest.raises(ValueError, match="cnn encoder needs"):
        build_classifier((64,), 10, encoder="cnn")


def test_fit_learns_and_is_deterministic(clustered):
    points, labels = clustered
    runs = []
    for _ in range(2):
        model = build_classifier((16,), 3, embedding_dim=8, seed=0)
        stats = fit(model, points, labels, TrainConfig(epochs=5, seed=1))
        runs.append(_weights(model))
    assert stats["train_accuracy"] > 0.95
    assert torch.equal(runs[0], runs[1])


def test_derived_seeds_differ_by_part():
    assert derive_seed(0, 1, 2) == derive_seed(0, 1, 2) != derive_seed(0, 2, 1)
    assert 0 <= derive_seed(2**40, 7) < 2**31
