"""``relatlas bench perf --sections messages``: the bytes a client is sent per round.

Measured on the run's own ``train`` message (and, for a two-phase anchor mode, its
``query``), as ``protocol.message_bytes`` weighs it, three ways: the public inputs
sent raw, as every round did before they were named by digest (and still do, once,
to a client that brings its own data); the first round, where a client holding the
run's dataset is sent their rows there; and a later round, the digests alone.
"""

from __future__ import annotations

from typing import Any

from relatlas.clients import protocol
from relatlas.server.config import RunConfig
from relatlas.server.run_setup import RunSetup

WAYS = {"raw (every round before; once for own data)": False, "first round (rows)": None, "later rounds (digest)": True}


def message_figures(config: RunConfig) -> dict[str, Any]:
    """Bytes per client per round each way, for ``config``'s dataset and anchor mode (no training)."""
    setup = RunSetup.prepare(config)
    inputs = [setup.anchor_mode.train_inputs(setup.sent)]  # the train message's
    if setup.anchor_mode.two_phase:  # and the query's, which carries the samples; its pairing adds no public input
        inputs.append(setup.sent)
    sent = {way: sum(protocol.message_bytes(setup.content(2, 0, each, holds)) for each in inputs) for way, holds in WAYS.items()}
    return {"dataset": config.dataset, "anchors_mode": config.anchors_mode, "bytes_sent_per_client": sent}


def message_table(figures: dict[str, Any]) -> list[str]:
    """The section's rows of ``relatlas bench perf``'s Markdown table."""
    setting = f"bytes sent per client per round ({figures['dataset']}, anchors-mode {figures['anchors_mode']})"
    rows = [f"| {way} | {size:,} |" for way, size in figures["bytes_sent_per_client"].items()]
    return ["", f"| {setting} | bytes |", "|---|---|", *rows]
