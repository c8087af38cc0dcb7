"""The processes a deployment started, told from later ones that reuse their ids
(same id, command line and start time), and stopped with their children.
``relatlas deploy up`` records them; ``relatlas deploy down`` stops only those
that are still the same processes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psutil

STOP_SECONDS = 10.0
BOOT_TIME_JITTER_SECONDS = 2.0  # /proc/stat btime is wall clock minus uptime, rounded: each read can step by 1 s


def checked_record(record: Any) -> dict[str, Any]:
    """``record`` if it has the shape ``LocalDeployment._record`` writes; a ``ValueError`` otherwise."""
    entries = record["processes"]
    if not (isinstance(record["supernodes"], int) and isinstance(record["address"], str) and isinstance(entries, list)):
        raise ValueError("supernodes, address or processes of the wrong type")
    for entry in entries:
        pid, started, command = entry["pid"], entry["create_time"], entry["cmdline"]
        if not (isinstance(pid, int) and pid > 0 and isinstance(started, (int, float)) and isinstance(command, list)):
            raise ValueError(f"process entry {str(entry)[:60]} is not a pid, a start time and a command line")
    return record


def identity(pid: int) -> dict[str, Any]:
    """What tells this process from a later one with the same id."""
    process = psutil.Process(pid)
    return {"pid": pid, "create_time": process.create_time(), "cmdline": process.cmdline()}


def same_process(entry: Mapping[str, Any]) -> bool:
    """Same id, command line and start time, to within the seconds by which the
    kernel's boot time (and so psutil's ``create_time``) may move between reads:
    a start further apart is another process that reused the id."""
    try:
        now = identity(entry["pid"])
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    started_apart = abs(now["create_time"] - entry["create_time"])
    return now["cmdline"] == entry["cmdline"] and started_apart <= BOOT_TIME_JITTER_SECONDS


def stop_processes(pids: list[int], timeout: float = STOP_SECONDS) -> None:
    """SIGTERM ``pids`` and every descendant, then SIGKILL what is left after ``timeout``."""
    processes = []
    for pid in pids:
        try:
            parent = psutil.Process(pid)
            processes += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
