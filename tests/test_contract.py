"""The plug-in contract checked at its edges: a config's plug-ins load before its
names are checked, however it is built; an encoder's, a similarity's and a merge's
output is refused in one line naming the entry where it crosses into relatlas; a
run whose aggregation asks for no cosine runs with default options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
import ray
import torch
from torch import nn

from relatlas.aggregation.aggregators import AggregationError, aggregate, register_aggregation
from relatlas.aggregation.projection import relative_projection
from relatlas.aggregation.similarities import Similarity
from relatlas.api import run
from relatlas.clients.models import check_encoders
from relatlas.clients.task import Task
from relatlas.registries import AGGREGATIONS, ENCODERS, SIMILARITIES
from relatlas.registry import RegistryError
from relatlas.server.config import ConfigError, RunConfig

ROOT = Path(__file__).parents[1]

# A user's plug-in module, written from the how-tos: an encoder, a similarity and two
# aggregations over it (a sound one, and one whose merge is broken).
PLUGIN = """
import math

from torch import nn

from relatlas.aggregation.aggregators import register_aggregation
from relatlas.aggregation.merge import mean_merge
from relatlas.aggregation.similarities import Similarity
from relatlas.registries import ENCODERS, SIMILARITIES


@ENCODERS.register("theirs")
def theirs(input_shape, embedding_dim, **options):
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 32), nn.ReLU(), nn.Linear(32, embedding_dim))


SIMILARITIES.register("dot", Similarity(lambda anchors: anchors, lambda rows, anchors: rows @ anchors.T, (-math.inf, math.inf)))


@register_aggregation("dot-mean", similarities=("dot",))
def dot_mean(spaces, weights, masks):
    return mean_merge([space["dot"] for space in spaces], weights=weights, masks=masks)


@register_aggregation("dot-nan", similarities=("dot",))
def dot_nan(spaces, weights, masks):
    return dot_mean(spaces, weights, masks) * float("nan")
"""


@pytest.fixture
def plugin(tmp_path) -> dict[str, str]:
    """The plug-in module in a folder of its own, and the environment of a fresh process that finds it."""
    (tmp_path / "contract_plugin.py").write_text(PLUGIN)
    path = os.pathsep.join([str(tmp_path), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return os.environ | {"PYTHONPATH": path, "FLWR_TELEMETRY_ENABLED": "0"}


@pytest.fixture
def scratch(monkeypatch):
    """What a test registers here ends with it."""
    for registry in (ENCODERS, SIMILARITIES, AGGREGATIONS):
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))


def _python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh process: registering the plug-in here would outlive the test."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


def _task_record(**changes: str) -> dict:
    """A client's task of a default run, with ``changes`` (keys the user's run sets)."""
    facts = dict(round=1, partition_id=0, similarities=("cosine",), send_absolute=False, run_key="k", keep_state=False)
    return Task.of(RunConfig(), **facts).to_record() | changes


@pytest.mark.parametrize(
    "build",
    [
        "RunConfig(plugins='contract_plugin', encoder='theirs', aggregation='dot-mean').encoder",
        "RunConfig.from_mapping({'plugins': 'contract_plugin', 'encoder': 'theirs:dim=8'}).encoder",
        f"Task.from_record({_task_record(plugins='contract_plugin', encoder='theirs')!r}).model.encoder",
    ],
)
def test_a_configs_plugins_load_before_its_names_are_checked_however_it_is_built(plugin, tmp_path, build):
    code = f"from relatlas.clients.task import Task\nfrom relatlas.server.config import RunConfig\nprint({build})"
    done = _python(code, plugin, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("theirs")


def test_a_plugin_that_cannot_be_imported_is_one_line():
    with pytest.raises(RegistryError, match="^plugin module 'no_such_plugin' could not be imported: ModuleNotFoundError"):
        RunConfig(plugins="no_such_plugin", encoder="theirs")


def _register_encoder(name: str, output) -> None:
    """An encoder whose module maps a batch to ``output(batch)``."""

    class Broken(nn.Module):
        def forward(self, x):
            return output(x)

    ENCODERS.register(name, lambda input_shape, embedding_dim: Broken())


@pytest.mark.parametrize(
    ("name", "output", "message"),
    [
        ("narrow", lambda x: torch.zeros(len(x), 7), r"'narrow' returned \[2, 7\] for a batch of 2; expected a finite \[2, 64\]"),
        ("tokens", lambda x: torch.zeros(len(x), 4, 64), r"encoder 'tokens' returned \[2, 4, 64\] for a batch of 2"),
        ("flat", lambda x: torch.zeros(64), r"encoder 'flat' returned \[64\] for a batch of 2"),
        ("nan", lambda x: torch.full((len(x), 64), float("nan")), "encoder 'nan' returned non-finite values for a batch of 2"),
        ("listed", lambda x: [x], "encoder 'listed' returned a list for a batch of 2"),
    ],
)
def test_an_encoders_output_is_checked_on_one_batch(scratch, name, output, message):
    _register_encoder(name, output)
    with pytest.raises(ValueError, match=message) as caught:
        check_encoders(f"mlp,{name}", torch.rand(2, 8), 64)
    assert "\n" not in str(caught.value)


def test_an_encoder_checked_against_its_clients_own_width(scratch):
    _register_encoder("fixed", lambda x: torch.zeros(len(x), 16))
    check_encoders("fixed:dim=16", torch.rand(2, 8), 64)
    with pytest.raises(ValueError, match=r"encoder 'fixed' returned \[2, 16\] .* expected a finite \[2, 64\]"):
        check_encoders("fixed:dim=16,fixed", torch.rand(2, 8), 64)  # the second client takes embedding-dim


def test_relatlas_run_refuses_a_bad_encoder_before_ray_starts(scratch, tmp_path):
    _register_encoder("narrow", lambda x: torch.zeros(len(x), 7))
    config = RunConfig(encoder="narrow", out_dir=str(tmp_path / "out"), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(ConfigError, match=r"^encoder: encoder 'narrow' returned \[2, 7\] for a batch of 2"):
        run(config)
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def _spaces(clients: int, samples: int = 5, anchors: int = 3) -> list[dict[str, torch.Tensor]]:
    return [{"cosine": torch.rand(samples, anchors)} for _ in range(clients)]


@pytest.mark.parametrize(
    ("merge", "message"),
    [
        (lambda spaces: torch.stack([s["cosine"] for s in spaces]), r"returned \[\d, 5, 3\]"),  # [K, N, m]
        (lambda spaces: spaces[0]["cosine"][:, 0], r"returned \[5\]"),  # [N]
        (lambda spaces: spaces[0]["cosine"][:4], r"returned \[4, 3\]"),  # a sample lost
        (lambda spaces: spaces[0]["cosine"][:, :0], r"returned \[5, 0\]"),
        (lambda spaces: spaces[0]["cosine"] / 0 * 0, r"returned 15 non-finite values in \[5, 3\]"),
        (lambda spaces: spaces[0]["cosine"].numpy(), "returned a ndarray"),
    ],
)
def test_a_merge_that_returns_no_finite_samples_by_features_space_is_refused(scratch, merge, message):
    register_aggregation("broken")(lambda spaces, weights, masks: merge(spaces))
    expected = r"; expected a finite \[5, D\] tensor \(one row per sample, D > 0\)$"
    masked = {"masks": torch.ones(2, 5, dtype=torch.bool)}
    calls = ((_spaces(2), "2 clients", {}), (_spaces(1), "1 client", {}), (_spaces(2), "2 clients, with masks", masked))
    for spaces, how, kwargs in calls:
        with pytest.raises(AggregationError, match=f"^aggregation 'broken' {message} \\({how}\\){expected}"):
            aggregate("broken", spaces, **kwargs)


def test_a_merge_of_any_width_passes():
    spaces = _spaces(3)
    assert aggregate("concat", spaces).shape == (5, 9) and aggregate("mean", spaces, masks=torch.ones(3, 5)).shape == (5, 3)


@pytest.mark.parametrize("block_elements", [8, 1024])  # in blocks of rows, and all rows at once
def test_a_similarity_of_the_wrong_shape_is_refused_naming_it(scratch, block_elements):
    SIMILARITIES.register("transposed", Similarity(lambda a: a, lambda x, a: (x @ a.T).T, (-1e9, 1e9)))
    with pytest.raises(ValueError, match=r"^similarity 'transposed' returned \[4, \d\] for \d rows and 4 anchors; expected"):
        relative_projection(torch.randn(7, 3), torch.randn(4, 3), "transposed", block_elements=block_elements)


def test_relatlas_run_refuses_a_similarity_of_the_wrong_shape_before_ray_starts(scratch, tmp_path):
    SIMILARITIES.register("transposed", Similarity(lambda a: a, lambda x, a: (x @ a.T).T, (-1e9, 1e9)))
    register_aggregation("transposed-mean", ("transposed",))(lambda spaces, weights, masks: spaces[0]["transposed"])
    config = RunConfig(aggregation="transposed-mean", out_dir=str(tmp_path / "out"), tracking_uri=f"sqlite:///{tmp_path}/m.db")
    with pytest.raises(ConfigError, match=r"^aggregation transposed-mean: similarity 'transposed' returned \[2, 3\] for 3 rows"):
        run(config)
    assert not ray.is_initialized() and not (tmp_path / "out").exists()


def _run_plugin(env: dict[str, str], tmp_path: Path, **settings) -> tuple[subprocess.CompletedProcess, dict]:
    """``relatlas.run(RunConfig(plugins=...))``, as docs/howto/encoder.md shows it, of a
    small digits federation with the plug-in, in a fresh process."""
    values = dict(plugins="contract_plugin", epochs=1, probe_epochs=5, out_dir=str(tmp_path / "out"),
                  tracking_uri=f"sqlite:///{tmp_path}/mlflow.db") | settings  # fmt: skip
    done = _python(f"import relatlas\nprint(relatlas.run(relatlas.RunConfig(**{values!r})).status)", env, tmp_path)
    return done, json.loads((tmp_path / "out" / "results.json").read_text())


def test_an_aggregation_without_cosine_runs_with_default_options(plugin, tmp_path):
    """docs/howto/similarity.md's ``dot-mean``: every default baseline, the concatenation included, works on ``dot``."""
    done, results = _run_plugin(plugin, tmp_path, aggregation="dot-mean", encoder="theirs")
    assert done.returncode == 0 and done.stdout.strip() == "completed", done.stderr[-2000:]
    assert results["merged_accuracy"] > 0.3 and results["concat_accuracy"] > 0.3  # ten classes: well above chance
    assert len(results["client_accuracy"]) == 3 and results["centralized_accuracy"] is not None


def test_a_merge_returning_nan_fails_the_round_and_records_no_accuracy(plugin, tmp_path):
    done, results = _run_plugin(plugin, tmp_path, aggregation="dot-nan", num_clients=2, simulation_baselines=False)
    assert results["status"] == "failed" and results["rounds"] == [] and "merged_accuracy" not in results
    assert results["error"].startswith("AggregationError: aggregation 'dot-nan' returned ") and "\n" not in results["error"]
    assert "merged accuracy" not in done.stderr + done.stdout
    recorded = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").get_run(results["mlflow_run_id"])
    assert recorded.info.status == "FAILED" and "merged_accuracy" not in recorded.data.metrics
