import dataclasses
import tomllib
from pathlib import Path

import pytest

from relatlas.section_base import path_limits
from relatlas.sections import MLFLOW_NAME_LENGTH
from relatlas.server.cli import build_parser
from relatlas.server.cli_run import config_from_args
from relatlas.server.config import ConfigError, RunConfig


def test_flower_app_config_matches_run_config_defaults():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["tool"]["flwr"]["app"]["config"] == RunConfig().to_mapping()


def test_round_trip_through_a_flower_run_config():
    config = RunConfig(dataset="npz:/data/x.npz", rounds=2, learning_rate=0.01)
    assert RunConfig.from_mapping(config.to_mapping()) == config


def test_cli_options_mirror_the_config():
    args = build_parser().parse_args(["run", "--clients", "4", "--aggregation", "product", "--simulation-baselines", "false"])
    config = config_from_args(args)
    assert (config.num_clients, config.aggregation, config.simulation_baselines) == (4, "product", False)
    assert dataclasses.replace(config, num_clients=3, aggregation="mean", simulation_baselines=True) == RunConfig()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"aggregation": "mode"},
            "aggregation must be one of mean, product, product-sum, product-learned, product-weighted, concat, median, "
            "trimmed-mean, krum, multi-krum; got 'mode'",
        ),
        ({"rounds": 0}, "rounds must be positive"),
        ({"epochs": "3"}, "epochs must be int"),
        ({"learning-rate": float("nan")}, "learning-rate must be float"),
        ({"min-clients": 5}, "cannot exceed num-clients"),
        ({"colour": "red"}, "unknown run-config keys"),
        ({"simulation-baselines": "maybe"}, "must be bool"),
        ({"payload": "zip"}, "unknown payload 'zip'; registered: fp32, fp16, topk"),
        ({"payload": "topk:0"}, "payload must be topk:K or topk:K:P with K >= 1 and P > 0; got topk:0"),
        ({"payload": "fp16:2"}, "payload fp16 takes no argument"),
        (
            {"payload": "topk:8", "aggregation": "product"},
            r"an aggregation of cosines only \(mean, concat, median, trimmed-mean, krum, multi-krum\)",
        ),
        ({"anchors-mode": "random"}, "anchors-mode must be one of shared, class-matched"),
        ({"anchors-mode": "class-matched", "split": "disjoint-classes"}, "disjoint-classes split has none"),
        ({"anchors-mode": "bootstrapped", "seed-anchors": 65}, r"seed-anchors \(65\) cannot exceed anchors \(64\)"),
        ({"anchors-mode": "bootstrapped", "min-clients": 1}, "set min-clients >= 2"),
        ({"casper-batch": -1}, "casper-batch must be zero or more"),
        ({"regularizer": "casper", "casper-batch": 10}, "graph batch of 10 .* needs casper-k below it"),
        ({"regularizer": "casper", "batch-size": 8, "casper-classes": 7}, "graph batch of 8 .* casper-classes 7"),
    ],
)
def test_bad_values_fail_in_one_line(values, message):
    with pytest.raises(ConfigError, match=message) as err:
        RunConfig.from_mapping(values)
    assert "\n" not in str(err.value)


def test_translation_inversion_accepts_fewer_seeds_than_dimensions():
    config = RunConfig.from_mapping({"anchors-mode": "translated", "translation": "inversion", "seed-anchors": 8})
    assert config.seed_anchors < config.embedding_dim


def test_continual_runs_one_round_per_experience():
    assert RunConfig(scenario="continual", experiences=4).num_rounds == 4
    assert RunConfig(rounds=3).num_rounds == 3
    with pytest.raises(ConfigError, match="each round is one experience"):
        RunConfig(scenario="continual", experiences=4, rounds=2)


def test_casper_without_a_replay_buffer_is_refused():
    with pytest.raises(ConfigError, match="strategy naive has none"):
        RunConfig.from_mapping({"strategy": "naive", "regularizer": "casper"})


def test_text_values_are_bounded_before_any_plugin_is_imported():
    longest_path, longest_name = path_limits()
    assert RunConfig(experiment="e" * MLFLOW_NAME_LENGTH, dataset=f"npz:{'d' * (longest_name - 4)}.npz")  # at the limits
    assert RunConfig(encoder=",".join(["mlp", "cnn"] * 100), dataset="fashion-mnist")  # a long list of short items
    with pytest.raises(ConfigError, match=f"experiment has {MLFLOW_NAME_LENGTH + 1} characters; at most {MLFLOW_NAME_LENGTH}"):
        RunConfig(experiment="e" * (MLFLOW_NAME_LENGTH + 1))
    with pytest.raises(ConfigError, match=f"out-dir has a part of {longest_name + 1} characters .* at most {longest_name}"):
        RunConfig(out_dir=f"runs/{'o' * (longest_name + 1)}/x")
    with pytest.raises(ConfigError, match=f"plugins has {longest_path + 1} characters; at most {longest_path}"):
        RunConfig(plugins="p" * (longest_path + 1))  # a RegistryError, were the module imported first
