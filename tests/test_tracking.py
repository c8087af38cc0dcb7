import math

from server.tracking import scalar_metrics, strict_json


def test_lists_become_per_client_metrics_and_the_merged_row_per_experience_metrics():
    metrics = {
        "merged_accuracy": 0.8, "client_partitions": [0, 2], "client_accuracy": [0.7, None],
        "experience_accuracy": [0.9, 0.7], "client_experience_accuracy": [[0.9], [0.8]], "train_seconds": math.inf,
    }  # fmt: skip
    assert scalar_metrics(metrics) == {
        "merged_accuracy": 0.8, "client_accuracy/client0": 0.7,
        "merged_accuracy/experience0": 0.9, "merged_accuracy/experience1": 0.7,
    }  # fmt: skip


def test_results_are_strict_json():
    assert strict_json({"a": [1.0, math.nan, {"b": -math.inf}], "c": "x"}) == {"a": [1.0, None, {"b": None}], "c": "x"}
