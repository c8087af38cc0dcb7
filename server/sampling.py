"""Which clients train in a round (``fraction-train``, ``min-train-nodes``).

The sample is drawn from the run's seed and the round's number alone, over the
partitions (not the nodes' ids, which a new Flower run renumbers): round r trains
the same clients in every run of the config, a resumed one's included, whatever
order the replies come in. A round that trains every client draws nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from relatlas.clients.training import derive_seed

SAMPLING_STREAM = 50_000  # seed stream of the rounds' samples, apart from the clients' and the server's models


def sample_nodes(partitions: Mapping[int, int], size: int, seed: int, round_number: int) -> dict[int, int]:
    """``size`` of the nodes of ``partitions`` (node -> partition) for round ``round_number``,
    in partition order; every node if ``size`` is as many."""
    if size >= len(partitions):
        return dict(partitions)
    nodes = {partition: node for node, partition in partitions.items()}
    generator = np.random.default_rng(derive_seed(seed, SAMPLING_STREAM, round_number))
    chosen = generator.choice(sorted(nodes), size, replace=False)
    return {nodes[int(partition)]: int(partition) for partition in sorted(chosen)}
