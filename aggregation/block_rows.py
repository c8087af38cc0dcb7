"""How many sample rows one block of a relative projection takes, by device.

On the CPU a block holds at most ``block_elements`` output entries (256 MiB of fp32
by default): memory stays flat, and a block's call costs little next to its work.
On CUDA every block is a few kernel launches, and small blocks leave the GPU idle
between them (launch-bound: 1,024-row blocks ran at 0.03 of one ``cdist`` call), so
there a block is sized by the device's free memory and ``block_elements`` is only a floor.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Of the device's free memory, the share one block's output may take: its intermediates
# (the normalised rows, ``cdist``'s squared norms) take about as much again.
CUDA_FREE_SHARE = 0.25


def block_rows(
    samples: int, anchors: int, block_elements: int, device: torch.device, free_bytes: Callable[[], int],
    element_size: int = 4,
) -> int:  # fmt: skip
    """Rows per block of a ``[samples, anchors]`` projection on ``device``; ``free_bytes`` (its
    free memory) is asked only on CUDA, and only when ``block_elements`` would cut the rows."""
    rows = max(1, block_elements // max(1, anchors))
    if device.type != "cuda" or rows >= samples:
        return rows
    return max(rows, int(CUDA_FREE_SHARE * free_bytes()) // (element_size * max(1, anchors)))


def cuda_free_bytes(device: torch.device) -> Callable[[], int]:
    """A CUDA ``device``'s free memory, read when called (``torch.cuda.mem_get_info``)."""
    return lambda: torch.cuda.mem_get_info(device)[0]
