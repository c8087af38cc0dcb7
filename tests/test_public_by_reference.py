"""The public inputs (anchors, seeds, evaluation samples) named by digest: clients that hold
the run's dataset read them there, others get them raw once and cache them; from round 2
nothing raw is sent, and the numbers are today's (to float tolerance)."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from relatlas.benchmarks.datasets import load_dataset
from relatlas.clients import protocol
from relatlas.clients.public_inputs import CACHE_FOLDER, PublicInputsError, input_digest, received_inputs
from relatlas.server.federation import run_federation
from relatlas.server.local_grid import FIRST_NODE
from relatlas.server.run_setup import RunSetup
from tests.conftest import as_recorded, small_run_config
from tests.test_atlas import SMALL, TODAY, RecordingGrid
from tests.test_own_data import own_npz
from tests.test_sources import image_folder

KEYS = tuple(TODAY[0])
# results.json of this run (anchors-mode translated) since Procrustes fixes the map beyond the anchors' span (the
# identity-closest one, aggregation/translation.py); before it, the SVD's choice there differed between CPUs
TRANSLATED_TODAY = [
    {
        "merged_accuracy": 0.5333333333333333,
        "client_accuracy": [0.55, 0.6166666666666667, 0.43333333333333335],
        "client_outlier_score": [1.0, 1.057312527135093, 0.6646408127245584],
        "payload_bytes_per_client": 69376.0,
    },
    {
        "merged_accuracy": 0.4666666666666667,
        "client_accuracy": [0.6, 0.65, 0.4666666666666667],
        "client_outlier_score": [1.0, 2.3480672609473694, 0.9278138032142986],
        "payload_bytes_per_client": 69376.0,
    },
]


def _public_sent(message) -> set[str]:
    """The public inputs a message carries raw."""
    return set(message.content[protocol.INPUTS].keys()) & {protocol.SAMPLES, protocol.ANCHORS}


@pytest.mark.parametrize(("mode", "today"), [("shared", TODAY), ("translated", TRANSLATED_TODAY)])
def test_no_raw_public_input_is_sent_and_the_numbers_are_todays(tmp_path, mode, today):
    grid = RecordingGrid(3, tmp_path / "state")
    results = run_federation(grid, small_run_config(tmp_path, **SMALL | {"anchors-mode": mode}))
    assert [{key: r[key] for key in KEYS} for r in results["rounds"]] == as_recorded(today)
    assert grid.sent and not any(_public_sent(m) for m in grid.sent)  # the clients hold digits: named, read there
    first, later = ([m for m in grid.sent if m.metadata.group_id == r] for r in ("1", "2"))
    assert all(any(key.endswith("-rows") for key in m.content[protocol.PUBLIC]) for m in first)
    assert all(not any(key.endswith("-rows") for key in m.content[protocol.PUBLIC]) for m in later)  # the digest alone
    sent = [r["bytes_sent_per_client"] for r in results["rounds"]]
    assert sent[1] < sent[0] < 200 * 64 * 4  # the rows, then the digests alone: less than the raw samples
    assert len(list((tmp_path / "state" / CACHE_FOLDER).glob("*.npy"))) == 2  # the anchors (or seeds) and the samples


class SilentFirst(RecordingGrid):
    """Node ``silent`` does not answer round 1: its public inputs come raw in round 2."""

    silent = FIRST_NODE + 2

    def answer(self, message):
        if message.metadata.dst_node_id == self.silent and message.metadata.group_id == "1":
            return None
        return super().answer(message)


def test_a_client_whose_reply_did_not_come_gets_the_raw_inputs_once(tmp_path):
    grid = SilentFirst(3, tmp_path / "state")
    results = run_federation(grid, small_run_config(tmp_path, **SMALL | {"min-clients": 2}))
    assert results["rounds"][0]["clients_answered"] == 2
    second = {m.metadata.dst_node_id: _public_sent(m) for m in grid.sent if m.metadata.group_id == "2"}
    assert second == {FIRST_NODE: set(), FIRST_NODE + 1: set(), FIRST_NODE + 2: {protocol.SAMPLES, protocol.ANCHORS}}


def test_clients_with_their_own_data_get_the_raw_inputs_once_then_their_digests(tmp_path):
    pool = image_folder(tmp_path / "pool", per_class=20)
    own = f"npz:{own_npz(tmp_path / 'a.npz', [0, 1, 2])},npz:{own_npz(tmp_path / 'b.npz', [0, 1, 2])}"
    values = {"num-clients": 2, "probe-epochs": 5, "client-data": own, "rounds": 2, "epochs": 1, "simulation-baselines": False}
    config = small_run_config(tmp_path, dataset=f"imagefolder:{pool}", split="same-classes", anchors=12, **values)
    grid = RecordingGrid(2, tmp_path / "state")
    results = run_federation(grid, config)
    assert [r["clients_answered"] for r in results["rounds"]] == [2, 2]
    sent = {r: [_public_sent(m) for m in grid.sent if m.metadata.group_id == r] for r in ("1", "2")}
    assert sent == {"1": [{protocol.SAMPLES, protocol.ANCHORS}] * 2, "2": [set(), set()]}  # they hold no copy of the pool


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> RunSetup:
    return RunSetup.prepare(small_run_config(tmp_path_factory.mktemp("setup"), **SMALL))


def _held(setup: RunSetup):
    """The run's dataset as a client holding it reads it (the server keeps no inputs)."""
    config = setup.config
    return load_dataset(config.dataset, config.data_root or None, config.seed)


def test_the_server_keeps_the_labels_not_the_inputs(tmp_path, setup):
    assert len(setup.dataset.y_train) == len(_held(setup).y_train) and setup.dataset.input_shape == (64,)
    with pytest.raises(LookupError, match="dropped"):
        setup.dataset.x_train[setup.plan.anchor_indices]
    with_reference = RunSetup.prepare(small_run_config(tmp_path, **(SMALL | {"simulation-baselines": True})))
    assert np.array_equal(with_reference.dataset.x_train, _held(setup).x_train)  # the centralised reference trains on them


def _content(setup: RunSetup, holds: bool | None) -> RecordDict:
    raw, public = setup.by_reference(setup.sent, holds)
    return RecordDict({protocol.INPUTS: ArrayRecord(raw), protocol.PUBLIC: public})


def test_raw_inputs_are_cached_by_digest_and_read_back_equal(tmp_path, setup):
    cache = tmp_path / "cache"
    sent = received_inputs(_content(setup, False), cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{d}.npy" for d in setup.digests.values())
    later = _content(setup, True)
    assert not later[protocol.INPUTS].keys()
    read = received_inputs(later, cache)
    for name in setup.sent:
        assert np.array_equal(read[name].numpy(), sent[name].numpy())
        assert input_digest(read[name].numpy()) == setup.digests[name]


@pytest.mark.parametrize("plant", ["garbage", "other array", "link", "pickle", "fifo"])
def test_a_planted_or_corrupt_cache_file_is_refused_with_a_warning(tmp_path, setup, caplog, plant):
    cache = tmp_path / "cache"
    received_inputs(_content(setup, False), cache)
    path = cache / f"{setup.digests[protocol.SAMPLES]}.npy"
    path.unlink()
    if plant == "garbage":
        path.write_bytes(b"\x93NUMPY not really")
    elif plant == "other array":
        np.save(path, np.zeros((2, 3), np.float32))
    elif plant == "link":  # the right content, behind a link: still refused
        target = tmp_path / "elsewhere.npy"
        np.save(target, setup.sent[protocol.SAMPLES].numpy())
        path.symlink_to(target)
    elif plant == "fifo":  # opened without waiting for a writer
        os.mkfifo(path)
    else:
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with caplog.at_level(logging.WARNING), pytest.raises(PublicInputsError, match="lacks the public input 'samples'"):
        received_inputs(_content(setup, True), cache)
    assert [r.message for r in caplog.records if "public-input cache" in r.message]
    received_inputs(_content(setup, False), cache)  # sent again raw: the file is replaced, the link itself not followed
    assert path.is_file() and not path.is_symlink() and received_inputs(_content(setup, True), cache)[protocol.SAMPLES]


def test_a_client_holding_the_dataset_reads_the_inputs_there(tmp_path, setup):
    content = _content(setup, None)
    assert not content[protocol.INPUTS].keys()
    read = received_inputs(content, tmp_path / "cache", _held(setup))
    for name, array in setup.sent.items():
        assert np.array_equal(read[name].numpy(), array.numpy())


def test_a_digest_mismatch_is_a_one_line_error_naming_what_differs(tmp_path, setup):
    held = _held(setup)
    other = dataclasses.replace(held, x_test=held.x_test + 1.0)
    differs = r"^'samples' from this client's 'digits' \(float32 \[\d+, 64\]\) has digest \w+; the server's is \w+$"
    with pytest.raises(PublicInputsError, match=differs) as err:
        received_inputs(_content(setup, None), tmp_path / "cache", other)
    assert "\n" not in str(err.value)
    tampered = _content(setup, False)
    tampered[protocol.PUBLIC] = ConfigRecord(dict(tampered[protocol.PUBLIC]) | {protocol.ANCHORS: "0" * 64})
    with pytest.raises(PublicInputsError, match=r"^the sent 'anchors' .* the server's is 000000000000$"):
        received_inputs(tampered, tmp_path / "cache")
    tampered[protocol.PUBLIC] = ConfigRecord({protocol.ANCHORS: "../../etc/passwd"})
    with pytest.raises(PublicInputsError, match="not a sha256 hex digest"):
        received_inputs(tampered, tmp_path / "cache")
    beyond = _content(setup, None)
    beyond[protocol.PUBLIC] = ConfigRecord(dict(beyond[protocol.PUBLIC]) | {protocol.SAMPLES + ".test-rows": [0, 10**6]})
    with pytest.raises(PublicInputsError, match=r"^the server names rows up to 1000000 of 'digits''s test set of \d+$"):
        received_inputs(beyond, tmp_path / "cache", held)
