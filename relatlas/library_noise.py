"""Quiet what libraries print about themselves on every successful run.

A user reads these as trouble and can do nothing about them: SQLAlchemy's
``SADeprecationWarning`` raised while MLflow's SQLite store loads, JAXopt's "no
longer maintained" (Avalanche imports it), Avalanche's warnings about its own
internal calls, and Flower's "Manually terminating ClientAppActor" logged by each
actor as the simulation ends. Each is matched by the library module that raises it
and its category (or its exact message), so warnings raised by a user's own code,
a plug-in's, still show.

Flower's simulation package turns every ``DeprecationWarning`` on when it is
imported (a global ``"once"`` filter), and a filter added later is checked first:
``quiet_library_noise`` imports that module first, so its own filters come in
front whatever was imported before. relatlas calls it where a run starts (the
Python API, Ray's workers), where MLflow's store loads, and before a client's
first Avalanche import. Avalanche's deprecated functions turn the same filter on
again each time they are called; a warning they raise about Avalanche itself
still shows.
"""

from __future__ import annotations

import logging
import warnings

LIBRARY_DEPRECATIONS = (r"mlflow\.store\.", r"jaxopt(\.|$)", r"avalanche\.")  # modules whose own deprecations are hidden
ACTOR_SHUTDOWN = "Manually terminating %s"  # Flower's log line (flwr/simulation/ray_transport/ray_actor.py)


def _not_actor_shutdown(record: logging.LogRecord) -> bool:
    return record.msg != ACTOR_SHUTDOWN


def quiet_actor_shutdown() -> None:
    """Drop Flower's actor-shutdown line, and only it, in this process (an actor
    imports the ClientApp's module, which calls this)."""
    flower = logging.getLogger("flwr")
    if _not_actor_shutdown not in flower.filters:
        flower.addFilter(_not_actor_shutdown)


def quiet_library_noise() -> None:
    """Hide the libraries' own deprecations and Flower's actor-shutdown line, in this
    process; calling it again moves the filters back to the front."""
    import flwr.simulation.ray_transport.utils  # noqa: F401  (its import adds the global "once" filter)

    for module in LIBRARY_DEPRECATIONS:
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    quiet_actor_shutdown()
