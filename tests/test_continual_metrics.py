from __future__ import annotations

import pytest

from relatlas.benchmarks.continual_metrics import accuracy_matrix, average_accuracy, forgetting, summarize


def test_average_accuracy_and_forgetting_of_a_known_matrix():
    rows = [[0.9], [0.6, 0.8], [0.7, 0.5, 0.9]]
    matrix = accuracy_matrix(rows, 3)
    assert matrix[0] == [0.9, None, None]
    assert average_accuracy(matrix) == pytest.approx((0.7 + 0.5 + 0.9) / 3)
    # experience 0: best 0.9 -> 0.7; experience 1: best 0.8 -> 0.5
    assert forgetting(matrix) == pytest.approx((0.2 + 0.3) / 2)


def test_an_unfinished_run_is_summarised_from_its_last_row():
    summary = summarize([[0.9], [0.4, 0.8]], experiences=4)
    assert summary["average_accuracy"] == pytest.approx(0.6)
    assert summary["forgetting"] == pytest.approx(0.5)
    assert summary["accuracy_matrix"][3] == [None] * 4


def test_a_missed_round_leaves_a_gap_not_an_error():
    matrix = accuracy_matrix([[0.9], None, [0.5, 0.6, 0.7]], 3)
    assert matrix[1] == [None, None, None]
    assert forgetting(matrix) == pytest.approx(0.4)
    assert summarize([], 3)["average_accuracy"] is None
