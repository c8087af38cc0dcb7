"""Stopping a simulated run cleanly on SIGINT or SIGTERM.

Python runs signal handlers in the main thread; the ServerApp and Flower's
engine run in others (``server/simulation.py``). ``on_signals`` records the
signal instead of raising wherever the main thread happens to be; the
ServerApp calls ``check`` in its wait loops, between the centralised
reference's epochs, before it merges a round's replies and before it records
the round, which raises ``Interrupted`` there: no reply that came with or after
the signal is merged, the round in progress is not recorded, ``results.json``
says ``interrupted`` and the MLflow run ends KILLED. Meanwhile the main thread
kills the clients' actors and lets the engine stop. A second signal acts as it
would without relatlas.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_stop = threading.Event()
_recording = threading.Event()  # an on_signals block is open


class Interrupted(Exception):
    """A signal asked the run to stop; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum
        self.engine_running = False  # Flower's engine did not stop: its threads would hold the process's exit


def received() -> bool:
    """Whether a signal arrived since ``on_signals`` began."""
    return _stop.is_set()


def check() -> None:
    """Raise ``Interrupted`` if a signal arrived since ``on_signals`` began."""
    if _stop.is_set():
        raise Interrupted(_received[0])


@contextmanager
def on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM ask the run to stop (main thread only).
    Within an outer block (``relatlas run`` records from its start) it changes
    nothing, so a signal that came during start-up is kept, not cleared: raising
    ``KeyboardInterrupt`` there instead would reach whatever code the main thread
    is in, and a library's garbage-collection callback swallows it."""
    if _recording.is_set():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}

    def record(signum: int, frame: object) -> None:
        _received.append(signum)
        _stop.set()
        for number, handler in previous.items():  # the next signal acts as usual
            signal.signal(number, handler)

    _received.clear()
    _stop.clear()
    for signum in SIGNALS:
        signal.signal(signum, record)
    _recording.set()
    try:
        yield
    finally:
        _recording.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
