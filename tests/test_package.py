"""The distribution installs one import namespace, ``relatlas``."""

import importlib.metadata
import os
import subprocess
import sys

# As installed: without a PYTHONPATH that puts the repository root itself on the path.
INSTALLED = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def test_the_only_top_level_package_is_relatlas():
    top_level = importlib.metadata.distribution("relatlas").read_text("top_level.txt")
    assert top_level is not None and top_level.split() == ["relatlas"]


def test_the_layer_folders_are_not_importable_on_their_own(tmp_path):
    for name in ("server", "clients", "benchmarks", "aggregation"):
        command = [sys.executable, "-c", f"import {name}"]
        probe = subprocess.run(command, cwd=tmp_path, env=INSTALLED, capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, name


def test_the_layers_import_under_relatlas(tmp_path):
    probe = subprocess.run(
        [sys.executable, "-c", "import relatlas.server.config as config; print(config.__name__)"],
        cwd=tmp_path, env=INSTALLED, capture_output=True, text=True,
    )  # fmt: skip
    assert probe.stdout.strip() == "relatlas.server.config", probe.stderr
