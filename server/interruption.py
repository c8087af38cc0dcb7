"""Stopping a simulated run cleanly on SIGINT or SIGTERM.

Flower runs the ServerApp in a thread and its simulation engine in the main
thread, which is where Python delivers signals. ``on_signals`` records the
signal instead of raising in the engine; the ServerApp's wait loops call
``check``, which raises ``Interrupted`` there: the round in progress is not
recorded, ``results.json`` says ``interrupted``, the MLflow run ends KILLED, and
the ServerApp's end stops the engine and its Ray actors. A second signal acts as
it would without relatlas.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []
_stop = threading.Event()


class Interrupted(Exception):
    """A signal asked the run to stop; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def check() -> None:
    """Raise ``Interrupted`` if a signal arrived since ``on_signals`` began."""
    if _stop.is_set():
        raise Interrupted(_received[0])


@contextmanager
def on_signals() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM ask the run to stop (main thread only)."""
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
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
