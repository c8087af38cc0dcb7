"""A successful run prints nothing a user would read as trouble: the libraries'
own deprecations and Flower's actor-shutdown line are quieted, a user's own
warnings are not (relatlas/library_noise.py)."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

from relatlas.library_noise import ACTOR_SHUTDOWN, quiet_library_noise

# What relatlas.run loads, in its order: Flower's simulation (which turns every DeprecationWarning on),
# Avalanche (with JAXopt) for continual scoring, then MLflow's SQLite store
RUN_IMPORTS = """
import warnings
from relatlas.library_noise import quiet_library_noise
quiet_library_noise()
import relatlas.server.simulation
from relatlas.server.tracking import use_tracking
use_tracking("sqlite:///{db}", "noise")
warnings.warn("the user's own", DeprecationWarning)
"""


def test_mlflow_store_and_avalanche_load_without_the_libraries_deprecations(tmp_path):
    script = RUN_IMPORTS.format(db=tmp_path / "mlflow.db")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    warned = [line.split(": ", 1)[1] for line in done.stderr.splitlines() if "Warning:" in line]
    assert warned == ["DeprecationWarning: the user's own"]


def test_flower_actor_shutdown_line_is_dropped_and_its_other_lines_kept():
    quiet_library_noise()
    flower = logging.getLogger("flwr")
    shutdown = flower.makeRecord("flwr", logging.WARNING, "ray_actor.py", 40, ACTOR_SHUTDOWN, ("ClientAppActor",), None)
    other = flower.makeRecord("flwr", logging.WARNING, "ray_actor.py", 40, "Actor %s died", ("ClientAppActor",), None)
    assert not flower.filter(shutdown) and flower.filter(other)


def test_a_users_own_deprecation_in_a_plugin_module_still_shows():
    quiet_library_noise()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what Flower's "once" does, for a fresh message
        quiet_library_noise()
        warnings.warn_explicit("old option", DeprecationWarning, "my_plugin.py", 1, module="my_plugin")
        store = "mlflow.store.tracking.sqlalchemy_store"
        warnings.warn_explicit("noload", DeprecationWarning, "sqlalchemy_store.py", 1, module=store)
    assert [str(w.message) for w in caught] == ["old option"]
