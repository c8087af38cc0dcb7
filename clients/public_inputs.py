"""The public inputs a client projects (the anchors or seeds, the evaluation samples),
named by content digest so that nothing raw crosses the wire more than once.

Every ``train`` and ``query`` message names each public input it needs in its ``public``
record (name -> digest). The raw array comes along only while the server has no reply
showing the client holds it; otherwise the client takes it, in this order, from the
message (checked against the digest, then cached), from its cache, or from its own copy
of the run's dataset, by the rows the message names (``<name>.test-rows`` then
``<name>.train-rows``, sent where the clients hold the run's dataset). Whatever it takes
is checked against the digest (a mismatch is a one-line error, never the wrong data used)
and cached, since later messages name it only.

The cache is ``<state-dir>/public-inputs/<digest>.npy``: plain ``.npy`` files read with
``allow_pickle=False`` through a descriptor that follows no link; a planted or corrupt
file is refused with a one-line warning (the server then sends the raw array again).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from relatlas.benchmarks.datasets import Dataset
from relatlas.benchmarks.sources import wire_array
from relatlas.clients import protocol
from relatlas.safe_files import atomic_write, open_cached, private_dir

log = logging.getLogger("relatlas")

CACHE_FOLDER = "public-inputs"
TEST_ROWS, TRAIN_ROWS = ".test-rows", ".train-rows"  # suffixes of a name's rows in the public record
DIGEST = re.compile(r"[0-9a-f]{64}")  # matched in full: a digest names a file


class PublicInputsError(ValueError):
    """A public input the client cannot take, or one that differs from its digest; one line."""


def input_digest(array: np.ndarray) -> str:
    """sha256 over an array's dtype, shape and bytes: equal digests, equal arrays."""
    digest = hashlib.sha256(f"{array.dtype.str}|{array.shape}|".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def public_record(digests: Mapping[str, str], rows: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> ConfigRecord:
    """The ``public`` record: each input's digest and, for those in ``rows``, its (test, train) rows
    (an empty part left out: a config record holds no empty list)."""
    record: dict[str, str | list[int]] = dict(digests)
    for name, parts in rows.items():
        for suffix, part in zip((TEST_ROWS, TRAIN_ROWS), parts):
            if len(part):
                record[name + suffix] = [int(i) for i in part]
    return ConfigRecord(record)


def received_inputs(content: RecordDict, cache: Path, dataset: Dataset | None = None) -> ArrayRecord:
    """The message's ``inputs`` with every public input it names in place: sent, cached, or
    rebuilt from ``dataset`` (the client's copy of the run's dataset, if it holds one)."""
    inputs: ArrayRecord = content[protocol.INPUTS]
    if protocol.PUBLIC not in content:
        return inputs
    named: ConfigRecord = content[protocol.PUBLIC]
    arrays = dict(inputs.items())
    for name, digest in named.items():
        if name.endswith((TEST_ROWS, TRAIN_ROWS)):
            continue
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise PublicInputsError(f"public input {name!r} is named by {str(digest)[:80]!r}, not a sha256 hex digest")
        if name in arrays:
            array = _checked(arrays[name].numpy(), digest, f"the sent {name!r}")
            _write_cache(cache / f"{digest}.npy", array)
            continue
        array = _read_cache(cache / f"{digest}.npy", digest)
        rows = [np.asarray(named.get(name + suffix, []), dtype=np.int64) for suffix in (TEST_ROWS, TRAIN_ROWS)]
        if array is None and dataset is not None and any(len(part) for part in rows):
            array = _checked(_rebuilt(dataset, *rows), digest, f"{name!r} from this client's {dataset.name!r}")
            _write_cache(cache / f"{digest}.npy", array)  # later messages name it only
        if array is None:
            raise PublicInputsError(f"this client lacks the public input {name!r} ({digest[:12]}): not sent, not under {cache}")
        arrays[name] = Array(array)
    return ArrayRecord(arrays)


def _checked(array: np.ndarray, digest: str, what: str) -> np.ndarray:
    found = input_digest(array)
    if found != digest:
        shape = f"{array.dtype} {list(array.shape)}"
        raise PublicInputsError(f"{what} ({shape}) has digest {found[:12]}; the server's is {digest[:12]}")
    return array


def _rebuilt(dataset: Dataset, test: np.ndarray, train: np.ndarray) -> np.ndarray:
    """The test rows, then the train rows, of ``dataset`` as the server sends them (``wire_array``)."""
    for split, x, rows in (("test", dataset.x_test, test), ("training", dataset.x_train, train)):
        if len(rows) and not 0 <= rows.min() <= rows.max() < len(x):
            raise PublicInputsError(f"the server names rows up to {rows.max()} of {dataset.name!r}'s {split} set of {len(x)}")
    parts = [wire_array(x[rows]) for x, rows in ((dataset.x_test, test), (dataset.x_train, train)) if len(rows)]
    return parts[0] if len(parts) == 1 else wire_array(np.concatenate(parts))


def _write_cache(path: Path, array: np.ndarray) -> None:
    private_dir(path.parent)
    with atomic_write(path) as file:
        np.save(file, array, allow_pickle=False)


def _read_cache(path: Path, digest: str) -> np.ndarray | None:
    """The cached array of ``digest``, or None when there is no usable file (warned unless absent)."""
    opened = open_cached(path, "public-input cache")
    if opened is None:
        return None
    try:
        with opened as file:
            array = np.load(file, allow_pickle=False)
        _checked(array, digest, "the cached array")
    except Exception as err:  # noqa: BLE001 - planted or corrupt: refused, whatever it holds
        log.warning("public-input cache %s is not one this client wrote (%s); refusing it", path, type(err).__name__)
        return None
    return array
