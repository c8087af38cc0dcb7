"""A simulation's Ray workers import the ClientApp as their process starts (``clients/actor_start.py``),
while the server sets up, not when the first message arrives. This module imports nothing of the
ClientApp at its top: a worker imports it to run ``_imported``."""

from __future__ import annotations

import sys

import ray

from relatlas.clients.actor_start import FIRST_MESSAGE_IMPORTS


def _imported() -> list[str]:
    return [module for module in FIRST_MESSAGE_IMPORTS if module in sys.modules]


def test_a_worker_has_imported_what_the_first_message_needs_before_any_task():
    from relatlas.server.simulation import init_ray

    assert not ray.is_initialized()
    init_ray("local", num_cpus=1, num_gpus=0)
    try:
        assert ray.get(ray.remote(_imported).remote()) == list(FIRST_MESSAGE_IMPORTS)
    finally:
        ray.shutdown()
