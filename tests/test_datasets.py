import numpy as np
import pytest

from relatlas.benchmarks.datasets import DEBIAN_FASHION_MNIST, DatasetError, load_dataset, stratified_split


def test_digits_is_the_embedded_default():
    data = load_dataset("digits")
    assert data.input_shape == (64,) and data.num_classes == 10
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1


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
    assert plain.input_shape == (3, 4) and len(plain.x_test) == 12
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
