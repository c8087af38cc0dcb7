"""Stream construction: explicit class lists that keep every class, and samples
that pickle by reference."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from relatlas.benchmarks.splits import SplitError
from relatlas.benchmarks.streams import DatasetRef, DatasetRows, class_schedule, client_stream, experience_rows


@pytest.mark.parametrize(("classes", "experiences"), [(10, 5), (10, 3), (7, 4), (10, 10)])
def test_class_schedule_keeps_every_class_once(classes, experiences):
    schedule = class_schedule(classes, experiences, "class-incremental", seed=3)
    assert len(schedule) == experiences
    assert sorted(c for group in schedule for c in group) == list(range(classes))
    assert max(map(len, schedule)) - min(map(len, schedule)) <= 1


def test_class_schedule_refuses_more_experiences_than_classes():
    with pytest.raises(SplitError, match="1 to 10 experiences"):
        class_schedule(10, 11, "class-incremental", seed=0)


def test_uneven_stream_on_digits_keeps_every_class_and_sample():
    ref = DatasetRef("digits", "", 0)
    data = ref.load()
    schedule = class_schedule(data.num_classes, 3, "class-incremental", seed=0)
    benchmark = client_stream(ref, np.arange(len(data.y_train)), schedule, "class-incremental", seed=0)
    seen = [sorted(set(experience.dataset.targets)) for experience in benchmark.train_stream]
    assert seen == [list(group) for group in schedule]
    assert sum(len(e.dataset) for e in benchmark.train_stream) == len(data.y_train)
    assert sum(len(e.dataset) for e in benchmark.test_stream) == len(data.y_test)


def test_new_instances_deal_every_row_once_with_all_classes():
    labels = np.repeat(np.arange(4), 25)
    schedule = class_schedule(4, 3, "new-instances", seed=0)
    parts = experience_rows(labels, schedule, "new-instances", seed=0)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(100))
    assert all(len(np.unique(labels[part])) == 4 for part in parts)


def test_rows_pickle_by_reference_not_by_value():
    rows = DatasetRows(DatasetRef("digits", "", 0), "train", np.arange(1000))
    x, y = rows[5]
    restored = pickle.loads(pickle.dumps(rows))
    assert len(pickle.dumps(rows)) < 10_000 < rows.arrays()[0].nbytes
    assert np.array_equal(restored[5][0].numpy(), x.numpy()) and restored[5][1] == y
