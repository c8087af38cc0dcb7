"""What a federation on Ray pays whatever its work, measured on its own: Ray's start,
one client actor's start (its process, and the ClientApp's imports that
``clients/actor_start.py`` runs as it starts) and Ray's stop.

``bench perf``'s overhead section adds these to the same work in one process:
``floor_ratio`` is the ratio a federation would reach if Flower's messages, the
server's set-up and results, and everything else a run adds cost nothing. Where it
is above ``overhead_ratio``'s target, no change to relatlas's own code meets the
target on that machine: the rest is Ray's processes and the imports of torch and Flower.
"""

from __future__ import annotations

import time

import ray

from relatlas.server.config import RunConfig
from relatlas.server.simulation import start_ray


@ray.remote
class _Started:
    """An actor that only answers, once its process has started and run Ray's setup hook."""

    def ready(self) -> bool:
        return True


def fixed_seconds(config: RunConfig) -> dict[str, float]:
    """Seconds of Ray's start as ``relatlas run`` starts it, of one actor holding a client's
    resources (``num-cpus``, ``num-gpus``) until it answers, and of Ray's stop; and their ``total``."""
    started = time.perf_counter()
    start_ray(config)
    seconds = {"ray_start": time.perf_counter() - started}
    try:
        started = time.perf_counter()
        actor = _Started.options(num_cpus=config.num_cpus, num_gpus=config.num_gpus).remote()
        ray.get(actor.ready.remote())
        seconds["actor_start"] = time.perf_counter() - started
    finally:
        started = time.perf_counter()
        ray.shutdown()
        seconds["ray_stop"] = time.perf_counter() - started
    return seconds | {"total": sum(seconds.values())}
