"""The built-in datasets, each an entry of ``relatlas.registries.DATASETS``.

``digits`` ships with scikit-learn and is the default. ``fashion-mnist`` comes
from the Debian package ``dataset-fashion-mnist`` or a torchvision root;
``mnist`` and ``cifar10`` from a torchvision root; ``npz:PATH`` from a file the
user supplies with ``X`` and ``y`` (and optionally ``X_test``/``y_test``).
``read_dataset`` (``benchmarks/datasets.py``) checks what each returns.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from relatlas.benchmarks.datasets import TEST_FRACTION, Dataset, check_pair, stratified_split
from relatlas.benchmarks.sources import DatasetError
from relatlas.registry import refuse_argument

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _from_arrays(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> Dataset:
    train, test = stratified_split(y, TEST_FRACTION, seed)
    return Dataset(name, x[train], y[train], x[test], y[test])


def digits(argument: str, *, root: str | None, seed: int) -> Dataset:
    """scikit-learn's 8x8 digits, split by ``seed``."""
    refuse_argument("dataset", "digits", argument, DatasetError)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return _from_arrays("digits", (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64), seed)


def read_idx(path: Path) -> np.ndarray:
    """Read an (optionally gzipped) IDX file of unsigned bytes, as MNIST ships."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _debian_fashion_mnist() -> Dataset:
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(DEBIAN_FASHION_MNIST / f"{prefix}-labels-idx1-ubyte.gz")
        parts[split] = (_BYTE_TO_UNIT[images[:, None]], labels.astype(np.int64))
    return Dataset("fashion-mnist", *parts["train"], *parts["test"])


# pixel byte -> float32 in [0, 1], the values of (byte / 255.0) in float64 rounded to float32, looked up
# rather than computed over the whole set, whose float64 copy alone is 376 MB (Fashion-MNIST's training images)
_BYTE_TO_UNIT = (np.arange(256) / 255.0).astype(np.float32)


def _torchvision(name: str, root: str | None) -> Dataset:
    from torchvision import datasets

    classes = {"fashion-mnist": datasets.FashionMNIST, "mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}
    hint = "install the Debian package dataset-fashion-mnist or " if name == "fashion-mnist" else ""
    if root is None:
        raise DatasetError(
            f"dataset {name!r} needs local files: {hint}pass --data-root DIR holding torchvision's {classes[name].__name__} files"
        )
    arrays = []
    for train in (True, False):
        try:
            ds = classes[name](root, train=train, download=False)
        except RuntimeError as err:
            raise DatasetError(f"dataset {name!r} not found under {root}: {hint}put torchvision's files there ({err})") from None
        x = np.asarray(ds.data, dtype=np.float32) / 255.0
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # to [N, C, H, W]
        arrays += [np.ascontiguousarray(x), np.asarray(ds.targets, dtype=np.int64)]
    return Dataset(name, *arrays)


def fashion_mnist(argument: str, *, root: str | None, seed: int) -> Dataset:
    """From the Debian package when no root is given and it is installed, else from torchvision's files."""
    refuse_argument("dataset", "fashion-mnist", argument, DatasetError)
    if root is None and DEBIAN_FASHION_MNIST.is_dir():
        return _debian_fashion_mnist()
    return _torchvision("fashion-mnist", root)


def mnist(argument: str, *, root: str | None, seed: int) -> Dataset:
    refuse_argument("dataset", "mnist", argument, DatasetError)
    return _torchvision("mnist", root)


def cifar10(argument: str, *, root: str | None, seed: int) -> Dataset:
    refuse_argument("dataset", "cifar10", argument, DatasetError)
    return _torchvision("cifar10", root)


def npz(path: str, *, root: str | None, seed: int) -> Dataset:
    """``npz:PATH``: arrays X, y (and optionally X_test, y_test) of a user's file, loaded without pickle."""
    if not path:
        raise DatasetError("dataset npz needs a file: npz:PATH")
    file = Path(path)
    if not file.is_file():
        raise DatasetError(f"npz file {path!r} does not exist")
    try:
        data = np.load(file, allow_pickle=False)
        arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read npz file {path!r}: {err}") from None
    if "X" not in arrays or "y" not in arrays:
        raise DatasetError(f"npz file {path!r} must hold arrays 'X' and 'y', found {sorted(arrays)}")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise DatasetError(f"npz file {path!r} must hold both 'X_test' and 'y_test' or neither")
    name = f"npz:{path}"
    if "X_test" not in arrays:
        check_pair(name, "X", "y", arrays["X"], arrays["y"])  # before the split the labels decide
        return _from_arrays(name, arrays["X"], arrays["y"], seed)
    return Dataset(name, arrays["X"], arrays["y"], arrays["X_test"], arrays["y_test"])
