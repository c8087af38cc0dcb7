"""Ray's processes in a session of their own, out of reach of the signals sent
to the process group of the run.

A terminal's Ctrl-C, ``timeout`` and ``kill -TERM -PGID`` signal every process
of a process group. Ray blocks SIGINT in the processes it starts, but not
SIGTERM: its raylet would stop at once, and the driver (this process) exits
with code 1 the moment its object store goes, before the ServerApp has recorded
the interruption. Within ``apart``, a child that ``subprocess`` starts with a
``preexec_fn`` (as Ray starts its own) leads a session of its own; the run then
stops Ray itself (``ray.shutdown``), and if this process is killed Ray's
fate-sharing ends them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_apart = False  # read in the forked child, before it runs the new program
_hooked = False


def _leave_session() -> None:
    if _apart:
        os.setsid()


@contextmanager
def apart() -> Iterator[None]:
    """Within the block, children started through ``subprocess`` with a ``preexec_fn``
    start a new session (``os.register_at_fork`` hooks run there; they cannot be removed,
    hence the flag)."""
    global _apart, _hooked
    if not _hooked:
        os.register_at_fork(after_in_child=_leave_session)
        _hooked = True
    _apart = True
    try:
        yield
    finally:
        _apart = False
