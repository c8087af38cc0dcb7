"""Pretrained torchvision backbones from a local weights file: loading, modes,
input transform, the frozen features' cache and the one-line errors. Each test
writes its own randomly initialised weights file: nothing downloads."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn

from relatlas.benchmarks.builtin_datasets import DEBIAN_FASHION_MNIST, read_idx
from relatlas.benchmarks.sources import LazyInputs
from relatlas.clients.backbones import IMAGENET_MEAN, IMAGENET_STD, ImageNetInput, native_side
from relatlas.clients.frozen_backbone import FrozenBackbone, cache_frozen_features
from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, fit
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.preflight import refuse_bad_input
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config

SIDE = 32  # images resized to 32x32: resnet18 stays fast on a CPU


@pytest.fixture
def weights(tmp_path):
    """A random-init resnet18 state dict in a file, as a user would save a pretrained one; seeded, so
    a federation on it gives the same numbers each time (unseeded, its merged accuracy ran from 0.26 to 0.45)."""
    path = tmp_path / "resnet18.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def save_weights(state: dict, path) -> None:
    """``state`` in the format the file's suffix names: safetensors or torch.save's."""
    save_file(state, path) if path.suffix == ".safetensors" else torch.save(state, path)


def frozen(weights, **options) -> nn.Module:
    spec = ":".join([f"torchvision:arch=resnet18:weights={weights}:size={SIDE}", *(f"{k}={v}" for k, v in options.items())])
    return build_classifier((1, 28, 28), 3, embedding_dim=8, encoder=spec, seed=0)


def rows_through_backbone(model: nn.Module) -> list[int]:
    """A counter of the input rows the frozen backbone's extractor computes."""
    seen = [0]
    model.embedder.extractor.register_forward_hook(lambda module, args, out: seen.__setitem__(0, seen[0] + len(args[0])))
    return seen


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_the_transform_is_what_torchvision_s_weight_metadata_states():
    for arch in ("resnet18", "mobilenet_v3_small"):
        preset = torchvision.models.get_model_weights(arch).DEFAULT.transforms()
        assert (tuple(preset.mean), tuple(preset.std)) == (IMAGENET_MEAN, IMAGENET_STD)
        assert native_side(arch) == preset.crop_size[0] == 224
    out = ImageNetInput(SIDE)(torch.full((2, 1, 28, 28), 0.5))
    assert out.shape == (2, 3, SIDE, SIDE)
    assert torch.allclose(out[0, :, 0, 0], (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD))


def test_a_frozen_backbone_computes_the_file_s_features_and_trains_only_its_projection(weights):
    model = frozen(weights)
    reference = torchvision.models.resnet18()
    reference.load_state_dict(torch.load(weights, weights_only=True))
    reference.fc = nn.Identity()
    x = images(6)
    with torch.no_grad():
        expected = reference.eval()(ImageNetInput(SIDE)(x))
    assert torch.allclose(model.embedder.features(x), expected, atol=1e-5)
    assert list(model.state_dict()) == ["embedder.projection.weight", "embedder.projection.bias", "head.weight", "head.bias"]
    backbone_before = {k: v.clone() for k, v in model.embedder.extractor.state_dict().items()}
    projection_before = model.embedder.projection.weight.clone()
    seen = rows_through_backbone(model)
    fit(model, images(40, seed=1), np.arange(40) % 3, TrainConfig(epochs=3, batch_size=16))
    assert seen[0] == 40  # features once per row, not once per epoch
    assert all(torch.equal(v, backbone_before[k]) for k, v in model.embedder.extractor.state_dict().items())
    assert not torch.equal(model.embedder.projection.weight, projection_before)


def test_finetune_trains_the_backbone_too(weights):
    model = frozen(weights, backbone="finetune")
    assert not isinstance(model.embedder, FrozenBackbone) and "embedder.0.1.conv1.weight" in model.state_dict()
    before = model.embedder[0][1].conv1.weight.clone()
    fit(model, images(16), np.arange(16) % 3, TrainConfig(epochs=1, batch_size=8))
    assert not torch.equal(model.embedder[0][1].conv1.weight, before)


def test_the_feature_cache_is_written_once_and_read_by_a_fresh_model(weights, tmp_path):
    folder, x = tmp_path / "state" / "run" / "partition-0", images(20)
    first = frozen(weights)
    computed = rows_through_backbone(first)
    cache_frozen_features(first, x.numpy(), folder)
    (cache,) = folder.iterdir()
    assert computed[0] == 20 and stat.S_IMODE(cache.stat().st_mode) == 0o600
    second = frozen(weights)
    read = rows_through_backbone(second)
    cache_frozen_features(second, x.numpy(), folder)
    assert read[0] == 0 and torch.equal(second.embedder.features(x), first.embedder.features(x))
    cache_frozen_features(second, images(20, seed=1).numpy(), folder)  # other inputs: another file
    assert read[0] == 20 and len(list(folder.iterdir())) == 2


def test_a_lazily_read_source_is_cached_in_batches_as_its_array_would_be(weights, tmp_path):
    x = images(300)  # more than one batch of the cache's reads
    from_array, from_source = frozen(weights), frozen(weights)
    cache_frozen_features(from_array, x.numpy(), tmp_path / "a" / "run" / "partition-0")
    cache_frozen_features(from_source, LazyInputs.of(list(x.numpy())), tmp_path / "b" / "run" / "partition-0")
    assert [p.name for p in (tmp_path / "a" / "run" / "partition-0").iterdir()] == [
        p.name for p in (tmp_path / "b" / "run" / "partition-0").iterdir()
    ]  # the same content key
    assert torch.allclose(from_source.embedder.features(x), from_array.embedder.features(x), atol=1e-5)


class Planted:
    """What an attacker's pickle would run on load."""

    def __reduce__(self):
        return (os.system, ("touch planted-ran",))


@pytest.mark.parametrize("plant", ["garbage", "wrong-shape", "pickle", "link"])
def test_a_planted_or_corrupt_cache_file_is_recomputed_not_trusted(weights, tmp_path, monkeypatch, plant):
    monkeypatch.chdir(tmp_path)
    folder, x = tmp_path / "state" / "run" / "partition-0", images(10)
    model = frozen(weights)
    cache_frozen_features(model, x.numpy(), folder)
    (cache,) = folder.iterdir()
    good = torch.load(cache, weights_only=True)["features"]
    target = tmp_path / "victim"
    target.write_bytes(b"keep")
    cache.unlink()
    if plant == "garbage":
        cache.write_bytes(b"\x00not a torch file")
    elif plant == "wrong-shape":
        torch.save({"features": torch.zeros(10, 3)}, cache)
    elif plant == "pickle":
        torch.save({"features": Planted()}, cache)
    else:
        cache.symlink_to(target)
    fresh = frozen(weights)
    computed = rows_through_backbone(fresh)
    cache_frozen_features(fresh, x.numpy(), folder)
    assert computed[0] == 10 and not (tmp_path / "planted-ran").exists()
    assert not cache.is_symlink() and target.read_bytes() == b"keep"
    assert torch.equal(torch.load(cache, weights_only=True)["features"], good)  # replaced by the recomputed features


def test_a_safetensors_file_gives_the_features_of_the_torch_file_of_the_same_weights(weights, tmp_path):
    save_file(torch.load(weights, weights_only=True), tmp_path / "resnet18.safetensors")
    x = images(6)
    from_torch, from_safetensors = frozen(weights), frozen(tmp_path / "resnet18.safetensors")
    assert torch.equal(from_safetensors.embedder.features(x), from_torch.embedder.features(x))
    assert from_safetensors.embedder.key != from_torch.embedder.key  # another file: its own feature cache


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_that_do_not_fit_name_the_first_key_and_both_shapes(tmp_path, weights, suffix):
    state = torch.load(weights, weights_only=True)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    save_weights(state, tmp_path / f"one-channel{suffix}")
    with pytest.raises(
        ValueError, match=r"key 'conv1.weight' has shape \[64, 1, 7, 7\] in the file, \[64, 3, 7, 7\] in the model"
    ):
        frozen(tmp_path / f"one-channel{suffix}")
    del state["conv1.weight"], state["layer1.0.bn1.bias"]
    state["extra.weight"] = torch.zeros(1)
    save_weights(state, tmp_path / f"missing{suffix}")
    with pytest.raises(
        ValueError, match=r"2 keys missing from the file \(conv1.weight, layer1.0.bn1.bias\), 1 unknown .*extra.weight"
    ):
        frozen(tmp_path / f"missing{suffix}")


@pytest.mark.parametrize("cut", [10, 1000, 0])
def test_a_truncated_or_corrupt_safetensors_file_is_refused_in_one_line_naming_it(tmp_path, weights, cut):
    path = tmp_path / "resnet18.safetensors"
    save_file(torch.load(weights, weights_only=True), path)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) - cut] if cut else b"\x00not safetensors")
    refusal = rf"^weights file '{re.escape(str(path))}' is not a safetensors file .*: Error while deserializing"
    with pytest.raises(ValueError, match=refusal) as info:
        frozen(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"arch": "resnet99"}, "unknown torchvision classification architecture 'resnet99'"),
        ({"backbone": "thawed"}, "backbone='thawed'; choose frozen or finetune"),
        ({"weights": "/nonexistent/w.pt"}, "weights file '/nonexistent/w.pt' does not exist"),
        ({"weights": "PICKLE"}, "is not a torch state-dict file"),
    ],
)
def test_bad_backbone_options_get_one_line_errors(tmp_path, weights, options, message):
    if options.get("weights") == "PICKLE":
        torch.save(Planted(), tmp_path / "pickle.pt")
        options = {"weights": tmp_path / "pickle.pt"}
    spec = dict(arch="resnet18", weights=weights, size=SIDE) | options
    text = "torchvision:" + ":".join(f"{k}={v}" for k, v in spec.items())
    with pytest.raises(ValueError, match=message) as info:
        build_classifier((1, 28, 28), 3, encoder=text)
    assert "\n" not in str(info.value)


def test_a_spec_without_weights_is_refused_naming_the_option():
    with pytest.raises(ValueError, match=r"encoder 'torchvision:arch=resnet18': missing a required argument: 'weights'"):
        build_classifier((1, 28, 28), 3, encoder="torchvision:arch=resnet18")


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ("digits", r"torchvision encoder arch=resnet18 needs \[1 or 3, H, W\] images; the data's input shape is \[64\]"),
        ("images", r"key 'conv1.weight' has shape \[64, 1, 7, 7\] in the file, \[64, 3, 7, 7\] in the model"),
    ],
)
def test_preflight_refuses_in_one_line_a_backbone_the_data_or_the_file_cannot_feed(tmp_path, weights, dataset, message):
    state = torch.load(weights, weights_only=True)
    state["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    torch.save(state, weights)
    if dataset == "images":  # 28x28 one-channel images, as an npz file holds them
        pixels = np.random.default_rng(0).integers(0, 256, (400, 28, 28), dtype=np.uint8)
        np.savez(tmp_path / "images.npz", X=pixels, y=np.arange(400) % 10)
        dataset = f"npz:{tmp_path / 'images.npz'}"
    config = RunConfig(dataset=dataset, encoder=f"torchvision:arch=resnet18:weights={weights}", out_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError, match=message) as info:
        refuse_bad_input(config)
    assert str(info.value).startswith("encoder: ") and "\n" not in str(info.value)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_a_federation_of_frozen_backbones_with_trained_projections(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x = read_idx(DEBIAN_FASHION_MNIST / "t10k-images-idx3-ubyte.gz")[:1500]
    y = read_idx(DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz")[:1500].astype(np.int64)
    np.savez(tmp_path / "fashion.npz", X=x[:1200], y=y[:1200], X_test=x[1200:], y_test=y[1200:])
    encoder = f"torchvision:arch=resnet18:weights={weights}:size={SIDE}:dim=16"
    config = small_run_config(tmp_path, dataset=f"npz:{tmp_path / 'fashion.npz'}", encoder=encoder, rounds=2, anchors=32)
    refuse_bad_input(config)
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert results["client_encoder_parameters"] == [512 * 16 + 16] * 3  # the projection alone trains
    assert 0.2 < results["merged_accuracy"] <= 1.0  # chance is 0.1; this seeded backbone gives 0.315
