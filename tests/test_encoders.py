"""The encoder registry, the per-client encoder specs and the residual nets."""

import pytest
import torch
from torch import nn

from relatlas.clients.models import build_classifier, parameter_count
from relatlas.encoder_spec import EncoderSpec, widest_embedding
from relatlas.registries import ENCODERS
from relatlas.server.config import ConfigError, RunConfig


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resnet8_embeds_fashion_mnist_sized_images_with_a_cifar_sized_net():
    embedder = build_classifier((1, 28, 28), 10, embedding_dim=48, encoder="resnet8").embedder
    assert embedder(torch.zeros(5, 1, 28, 28)).shape == (5, 48)
    # stem 144 + BN 32; stages of 16, 32, 64 channels with 1x1 projections; linear 64 -> 48
    assert parameter_count(embedder) == 81_264 - 64 * 64 - 64 + 64 * 48 + 48
    resnet20 = build_classifier((3, 32, 32), 10, encoder="resnet20").embedder
    assert 250_000 < parameter_count(resnet20) < 300_000  # the paper's 0.27M, with projection shortcuts
    assert sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in resnet20.modules()) == 19  # + 1 linear = 20


def test_resnet_fits_small_images_but_not_flat_inputs():
    assert build_classifier((1, 8, 8), 10, encoder="resnet8").embedder(torch.zeros(2, 1, 8, 8)).shape == (2, 64)
    with pytest.raises(ValueError, match=r"resnet encoders need \[C, H, W\] images, got input shape \(64,\)"):
        build_classifier((64,), 10, encoder="resnet8")


def test_spec_parses_name_options_and_width():
    spec = EncoderSpec.parse("mlp:hidden=128:dim=32")
    assert (spec.name, spec.options, spec.dim) == ("mlp", (("hidden", 128),), 32)
    assert spec.width(64) == 32 and EncoderSpec.parse("cnn").width(64) == 64
    assert str(spec) == "mlp:hidden=128:dim=32"
    model = build_classifier((64,), 10, embedding_dim=64, encoder=spec)
    assert model.embedder[1].out_features == 128 and model.head.in_features == 32


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vgg", r"unknown encoder 'vgg' in 'vgg'; registered: auto, mlp, cnn, resnet8, resnet20"),
        ("mlp:hidden", r"option 'hidden' is not key=value"),
        ("mlp:hidden=1:hidden=2", r"sets option 'hidden' twice"),
        ("cnn:dim=0", r"dim must be a positive integer; got 0"),
        ("cnn:dim=wide", r"dim must be a positive integer; got 'wide'"),
        ("mlp,cnn", r"is a list"),
    ],
)
def test_malformed_specs_get_one_line_errors(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        EncoderSpec.parse(text)
    assert "\n" not in str(caught.value)


def test_unknown_options_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"encoder 'cnn:hidden=8': got an unexpected keyword argument 'hidden'"):
        EncoderSpec.parse("cnn:hidden=8").entry()


def test_the_run_config_checks_every_client_spec():
    assert RunConfig(encoder="mlp, cnn:dim=32,resnet8").encoder == "mlp, cnn:dim=32,resnet8"
    for text, message in (("mlp,,cnn", "unknown encoder ''"), ("mlp,vgg", "registered: auto, mlp"), ("mlp:x=1", "'x'")):
        with pytest.raises(ConfigError, match=message) as caught:
            RunConfig(encoder=text)
        assert str(caught.value).startswith("encoder: ") and "\n" not in str(caught.value)


def test_specs_cycle_over_the_clients():
    specs = [EncoderSpec.for_client("mlp,cnn:dim=32,resnet8", i) for i in range(5)]
    assert [str(s) for s in specs] == ["mlp", "cnn:dim=32", "resnet8", "mlp", "cnn:dim=32"]
    assert widest_embedding("mlp:dim=16,cnn:dim=96", 64) == 96 and widest_embedding("mlp:dim=16", 64) == 16


def test_a_registered_user_encoder_builds_like_a_builtin(monkeypatch):
    monkeypatch.setattr(ENCODERS, "_entries", dict(ENCODERS._entries))  # the registration ends with the test

    @ENCODERS.register("test-linear")
    def linear(input_shape, embedding_dim, *, bias=1):
        return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[-1], embedding_dim, bias=bool(bias)))

    model = build_classifier((12,), 3, embedding_dim=5, encoder="test-linear:bias=0:dim=7", seed=1)
    assert model.embedder[1].bias is None and model(torch.zeros(2, 12)).shape == (2, 3) and model.head.in_features == 7
    assert RunConfig(encoder="mlp,test-linear").encoder == "mlp,test-linear"


@pytest.mark.parametrize("encoder", ["mlp:hidden=32", "cnn", "resnet8"])
def test_same_seed_same_weights_whatever_the_encoder(encoder):
    first = build_classifier((1, 28, 28), 10, encoder=encoder, seed=3)
    torch.rand(100)  # whatever else ran in this process
    assert torch.equal(_weights(first), _weights(build_classifier((1, 28, 28), 10, encoder=encoder, seed=3)))
    assert not torch.equal(_weights(first), _weights(build_classifier((1, 28, 28), 10, encoder=encoder, seed=4)))
