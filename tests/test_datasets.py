import logging

import numpy as np
import pytest
import torch
from torch import nn

from relatlas.benchmarks.builtin_datasets import DEBIAN_FASHION_MNIST, digits, read_idx
from relatlas.benchmarks.datasets import Dataset, DatasetError, load_dataset, stratified_split, unit_scaled
from relatlas.benchmarks.stitching_suite import StitchingSuiteConfig, stitching_tables
from relatlas.clients.models import build_classifier, check_encoders
from relatlas.registries import DATASETS


@pytest.fixture
def register(monkeypatch):
    """Register a user's loader returning the given arrays as dataset ``mine``, for one test."""
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))

    def returning(x_train, y_train, x_test, y_test):
        DATASETS.register("mine", lambda argument, *, root, seed: Dataset("mine", x_train, y_train, x_test, y_test))

    yield returning
    load_dataset.cache_clear()


def test_digits_is_the_embedded_default():
    data = load_dataset("digits")
    assert data.input_shape == (64,) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert np.array_equal(data.x_train, digits("", root=None, seed=0).x_train)  # the checks leave built-ins' numbers alone


def test_stratified_split_keeps_class_proportions():
    labels = np.repeat([0, 1], [100, 50])
    train, test = stratified_split(labels, 0.3, seed=0)
    assert np.bincount(labels[test]).tolist() == [30, 15]
    assert not set(train) & set(test)


def test_npz_with_and_without_test_arrays(tmp_path):
    x, y = np.random.rand(40, 3, 4).astype(np.float32), np.arange(40) % 4
    np.savez(tmp_path / "plain.npz", X=x, y=y)
    np.savez(tmp_path / "split.npz", X=x, y=y, X_test=x[:8], y_test=y[:8])
    plain = load_dataset(f"npz:{tmp_path / 'plain.npz'}", seed=1)
    assert plain.input_shape == (1, 3, 4) and len(plain.x_test) == 12  # [N, H, W]: one-channel images
    assert len(load_dataset(f"npz:{tmp_path / 'split.npz'}").x_test) == 8


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"X": np.zeros((4, 2))}, "must hold arrays 'X' and 'y'"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(3, dtype=int)}, r"must be \[N, ...\]"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(4)}, "non-negative integers"),
        ({"X": np.full((4, 2), np.nan), "y": np.zeros(4, dtype=int)}, "finite"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(4, dtype=int), "X_test": np.zeros((2, 2))}, "both 'X_test' and 'y_test'"),
    ],
)
def test_malformed_npz_fails_in_one_line(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset(f"npz:{path}")
    assert "\n" not in str(err.value)


def test_missing_and_unknown_datasets_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="--data-root"):
        load_dataset("cifar10")
    with pytest.raises(DatasetError, match="not found under"):
        load_dataset("mnist", str(tmp_path))


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_as_an_npz_of_uint8_images_without_channels_loads_as_the_built_in(tmp_path):
    files = {"X": "train-images-idx3", "y": "train-labels-idx1", "X_test": "t10k-images-idx3", "y_test": "t10k-labels-idx1"}
    arrays = {key: read_idx(DEBIAN_FASHION_MNIST / f"{name}-ubyte.gz") for key, name in files.items()}
    assert arrays["X"].shape == (60000, 28, 28) and arrays["X"].dtype == np.uint8
    np.savez(tmp_path / "fmnist.npz", **arrays)
    mine, built_in = load_dataset(f"npz:{tmp_path / 'fmnist.npz'}"), load_dataset("fashion-mnist")
    for part in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(mine, part), getattr(built_in, part))


X, Y = np.random.default_rng(0).random((12, 5)).astype(np.float32), np.arange(12) % 3


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ((X, Y + 1, X, Y + 1), r"labels must be 0..C-1 with every class in y_train; found 3 classes \(1, 2, 3\)"),
        ((X, np.arange(12) % 10 + 1, X, Y), r"found 10 classes \(1, 2, 3, 4, 5 and 5 more\)"),
        ((X, Y, X, Y + 1), "y_test up to 3: renumber them"),
        ((X, Y - 1, X, Y), "y_train must hold non-negative integers"),
        ((X, Y.astype(float), X, Y), "y_train must hold non-negative integers, got dtype float64"),
        ((X, Y[:5], X, Y), r"x_train must be \[N, ...\] and y_train \[N\] with N > 0, got \(12, 5\) and \(5,\)"),
        ((X, Y, X[:, :4], Y), r"x_test samples have shape \(4,\), x_train samples \(5,\)"),
        ((X, Y, np.where(X > 0.5, np.inf, X), Y), "x_test must hold finite real numbers"),
        ((X.astype(str), Y, X, Y), "x_train must hold finite real numbers"),
        ((X.astype(np.int64), Y, X.astype(np.int64), Y), "integer inputs must be uint8 or uint16 images"),
    ],
)
def test_every_loader_result_is_checked_in_one_line_naming_the_dataset(register, arrays, message):
    register(*arrays)
    with pytest.raises(DatasetError, match=message) as err:
        load_dataset("mine:v1")
    assert str(err.value).startswith("dataset 'mine:v1': ") and "\n" not in str(err.value)


def test_npz_labels_off_by_one_are_refused_like_a_loader_s(tmp_path):
    np.savez(tmp_path / "one.npz", X=X, y=Y + 1)
    with pytest.raises(DatasetError, match=r"npz:.*one.npz': labels must be 0..C-1"):
        load_dataset(f"npz:{tmp_path / 'one.npz'}")


class Messages(logging.Handler):
    """What a logger says, whatever other handlers the session has put on it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_integer_images_are_scaled_to_unit_range_and_said_so_once(register, caplog):
    caplog.set_level(logging.INFO, logger="relatlas")
    said = Messages()
    logging.getLogger("relatlas").addHandler(said)
    raw = np.random.default_rng(0).integers(0, 256, size=(12, 6, 6)).astype(np.uint8)
    raw[0, 0, 0] = 255
    register(raw, Y, raw[:6], Y[:6])
    try:
        data, again = load_dataset("mine"), load_dataset("mine")
    finally:
        logging.getLogger("relatlas").removeHandler(said)
    assert data is again and data.x_train.dtype == np.float32 and data.x_train.max() == 1.0
    np.testing.assert_array_equal(data.x_test[:, 0], (raw[:6] / 255.0).astype(np.float32))
    assert said.lines == ["dataset 'mine': uint8 inputs scaled to [0, 1] (divided by 255)"]


def test_float_inputs_are_used_as_given(register):
    register(X * 255, Y, X * 255, Y)
    data = load_dataset("mine")
    assert data.x_train.dtype == np.float32 and np.array_equal(data.x_train, (X * 255).astype(np.float32))


def test_images_without_a_channel_axis_take_the_image_encoders(register):
    images = np.random.default_rng(0).random((12, 28, 28)).astype(np.float32)
    register(images, Y, images[:3], Y[:3])
    data = load_dataset("mine")
    assert data.input_shape == (1, 28, 28) and data.x_test.shape == (3, 1, 28, 28)
    check_encoders("cnn,resnet8", torch.as_tensor(data.x_train[:2]), 8)  # refused for [28, 28] before
    auto = build_classifier(data.input_shape, data.num_classes, embedding_dim=8, encoder="auto")
    assert any(isinstance(layer, nn.Conv2d) for layer in auto.modules())
    assert StitchingSuiteConfig().skipped(data) == []


def test_the_stitching_table_says_which_encoder_it_skipped_and_why():
    suite = StitchingSuiteConfig(dataset="digits", cnn_seeds=(0, 1))
    data = load_dataset("digits")
    assert suite.encoders(data) == [("mlp", 0), ("mlp", 1), ("mlp", 2)]
    results = {"encoders": [], "failures": [], "skipped": suite.skipped(data)}
    why = "the cnn needs [C, H, W] images with H = W >= 28, inputs here are (64,)"
    assert stitching_tables(results).splitlines()[-2:] == [f"- skipped: cnn-seed{s}: {why}" for s in (0, 1)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unit_scaling_in_float32_gives_the_float64_division_s_numbers(dtype):
    values = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    top = float(np.iinfo(dtype).max)
    scaled = unit_scaled(values, top)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled, (values / top).astype(np.float32))
