"""Clients that bring their own training data: the run's dataset is the public pool only."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.common.config import parse_config_args

from relatlas.benchmarks.datasets import DatasetError, load_dataset
from relatlas.benchmarks.own_data import load_own_data, own_data_spec, run_classes
from relatlas.server.cli import build_parser
from relatlas.server.cli_deploy import _deployment
from relatlas.server.config import ConfigError, RunConfig
from relatlas.server.deployment import DeploymentError
from relatlas.server.preflight import refuse_bad_input
from relatlas.server.simulation import run_simulation
from tests.conftest import read_results, small_run_config
from tests.test_sources import CLASSES, image_folder


@pytest.fixture(autouse=True)
def fresh_cache():
    yield
    load_dataset.cache_clear()


def own_npz(path, labels, per_class: int = 12, side: int = 8):
    """An npz file of ``image_folder``'s kind of images (bright row block per label), labels as given, no names."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.asarray(labels), per_class)
    x = rng.integers(0, 60, size=(len(y), side, side)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, label * side // 3 : (label + 1) * side // 3] += 180
    np.savez(path, X=x, y=y)
    return path


def keep_classes(folder, names):
    """``folder`` with only the class folders ``names`` left (and others renamed as asked)."""
    for child in folder.iterdir():
        if child.name not in names:
            for file in child.iterdir():
                file.unlink()
            child.rmdir()
    return folder


def test_a_source_with_names_maps_by_name_and_one_without_by_index(tmp_path):
    birds = keep_classes(image_folder(tmp_path / "birds"), {"dog", "owl"})
    named = load_own_data(f"imagefolder:{birds}", None, 0, CLASSES)
    assert set(np.unique(named.y_train)) == {1, 2} and named.classes == CLASSES  # dog, owl: labels 1, 2 of the run
    unnamed = load_own_data(f"npz:{own_npz(tmp_path / 'mine.npz', [0, 1])}", None, 0, CLASSES)
    assert set(np.unique(unnamed.y_train)) == {0, 1}


def test_a_class_outside_the_label_list_is_refused_in_one_line(tmp_path):
    zoo = image_folder(tmp_path / "zoo")
    (zoo / "owl").rename(zoo / "zebra")
    with pytest.raises(DatasetError, match=r"^client data 'imagefolder:.*': class zebra is not in the run's label list \(cat"):
        load_own_data(f"imagefolder:{zoo}", None, 0, CLASSES)
    with pytest.raises(DatasetError, match=r"class 2 is not in the run's label list \(cat, dog\)"):
        load_own_data(f"npz:{own_npz(tmp_path / 'three.npz', [0, 1, 2])}", None, 0, ("cat", "dog"))


def test_which_source_a_client_reads():
    assert own_data_spec("", "", 1) is None  # a partition of the run's dataset, as before
    assert own_data_spec("npz:a.npz,npz:b.npz", "", 3) == "npz:b.npz"  # the list cycled
    assert own_data_spec("node", "imagefolder:/srv/x", 0) == "imagefolder:/srv/x"  # the SuperNode's own wins
    with pytest.raises(ConfigError, match="has no --node-config data=SPEC"):
        own_data_spec("node", "", 0)
    with pytest.raises(ConfigError, match="run with --client-data node"):
        own_data_spec("", "npz:/srv/mine.npz", 0)


def test_the_label_list_is_the_pools_names_or_the_given_ones(tmp_path):
    digits = load_dataset("digits")
    assert run_classes(digits, "") == tuple(str(label) for label in range(10))
    assert run_classes(digits, ",".join("abcdefghij"))[0] == "a"
    with pytest.raises(ConfigError, match="class-names names 2 classes; dataset 'digits' has 10"):
        run_classes(digits, "a,b")
    with pytest.raises(ConfigError, match="neither node nor a registered dataset"):
        RunConfig(client_data="npz:a.npz,imagenet")
    with pytest.raises(ConfigError, match="class-names is the label list clients with their own data map onto"):
        RunConfig(class_names="a,b")
    with pytest.raises(ConfigError, match="continual scenario streams a split"):
        RunConfig(client_data="node", scenario="continual")


def test_each_simulated_client_trains_on_its_own_folder_or_file(tmp_path):
    pool = image_folder(tmp_path / "pool", per_class=20)
    birds = keep_classes(image_folder(tmp_path / "birds", per_class=20), {"dog", "owl"})
    own = f"imagefolder:{birds},npz:{own_npz(tmp_path / 'c.npz', [0, 1, 2])}"
    config = small_run_config(
        tmp_path, dataset=f"imagefolder:{pool}", split="same-classes", anchors=12,
        **{"num-clients": 2, "probe-epochs": 5, "client-data": own},
    )  # fmt: skip
    refuse_bad_input(config)
    run_simulation(config)
    results = read_results(config)
    assert results["status"] == "completed" and results["failures"] == []
    assert results["classes"] == list(CLASSES) and "centralized_accuracy" not in results  # no reference: the data is theirs
    assert 0.5 < results["merged_accuracy"] <= 1.0
    sizes = [len(load_dataset(spec, None, config.seed).y_train) for spec in own.split(",")]  # all of each source's rows
    assert results["client_partitions"] == [0, 1] and results["client_num_examples"] == sizes


def test_a_simulated_client_with_an_unknown_class_stops_the_run_before_training(tmp_path):
    zoo = image_folder(tmp_path / "zoo")
    (zoo / "owl").rename(zoo / "zebra")
    own = f"npz:{own_npz(tmp_path / 'a.npz', [0, 1])},imagefolder:{zoo}"
    pool = f"imagefolder:{image_folder(tmp_path / 'pool')}"
    config = small_run_config(tmp_path, dataset=pool, split="same-classes", anchors=12, **{"client-data": own})
    with pytest.raises(DatasetError, match="class zebra is not in the run's label list"):
        refuse_bad_input(config)
    with pytest.raises(ConfigError, match="simulated clients have none"):
        run_simulation(small_run_config(tmp_path, **{"client-data": "node"}))


def test_deploy_up_gives_each_supernode_its_own_data_as_flower_reads_it(tmp_path):
    def up(*specs):
        argv = ["deploy", "up", "--dir", str(tmp_path), "--supernodes", "2", "--node-data", *specs]
        return _deployment(build_parser().parse_args(argv))

    specs = ("npz:/srv/a.npz", "imagefolder:/srv/b:size=8")
    assert [parse_config_args([config]) for config in up(*specs).node_configs] == [{"data": spec} for spec in specs]
    with pytest.raises(DeploymentError, match="3 node configs for 2 SuperNodes"):
        up("npz:a", "npz:b", "npz:c")
