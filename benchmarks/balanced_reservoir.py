"""A class-balanced reservoir buffer: Mammoth's "balancoir" (``utils/buffer.py``:
``BalancoirSampling`` and ``Buffer.get_balanced_data``), the memory CaSpeR draws
its graph batches from (ALGORITHMS.md section 6, step 1).

Insertion: the buffer fills in arrival order; once full, the ``n``-th sample
offered draws ``r`` uniform in ``0..n`` and is kept if ``r < capacity`` (plain
reservoir sampling) or if its class holds fewer samples than the median class in
the buffer (a class absent from it holds none). A kept sample replaces one of the
largest class (the lowest label among equals), the ``r mod size``-th of that
class in buffer order. Unlike the reference, class counts are taken from the
buffer itself: Mammoth's running counts also subtract the zero-initialised
label of every empty slot it fills, so its class 0 is undercounted.

Draw: ``p`` classes among those holding at least ``ceil(size / p)`` samples,
``size // p`` from each and the remainder one per class to the first
``size mod p`` of them; if fewer than ``p`` classes qualify, ``p`` falls to the
number that do and the threshold is recomputed; if none does, ``size`` samples
uniformly. (The reference's threshold is the larger share, ``ceil(size / p)``,
so that every chosen class can give its share.) Pure tensors: every random
choice comes from the generator passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from statistics import median

import torch
from torch import Tensor


class BalancedReservoir:
    """At most ``capacity`` (input, label) pairs; ``len`` is how many it holds."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"a balanced reservoir needs a capacity of at least 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0  # samples offered so far
        self.inputs: Tensor | None = None  # [capacity, ...]: the first len(self) rows are held
        self.labels = torch.zeros(capacity, dtype=torch.long)  # on the CPU: read one sample at a time
        self.counts: Counter[int] = Counter()  # samples held per class, kept in step with labels

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def held_labels(self) -> Tensor:
        return self.labels[: len(self)]

    def add(self, inputs: Tensor, labels: Tensor, generator: torch.Generator) -> None:
        """Offer each sample in turn, as the reference offers every training batch."""
        if self.inputs is None:
            self.inputs = torch.zeros((self.capacity, *inputs.shape[1:]), dtype=inputs.dtype, device=inputs.device)
        for x, y in zip(inputs, labels.tolist(), strict=True):
            slot = self._slot(y, generator)
            if slot >= 0:
                if slot < len(self):
                    self.counts[int(self.labels[slot])] -= 1
                self.inputs[slot], self.labels[slot] = x, y
                self.counts[y] += 1
            self.seen += 1

    def _slot(self, label: int, generator: torch.Generator) -> int:
        """Where the next sample of class ``label`` goes, or -1 to drop it."""
        if self.seen < self.capacity:
            return self.seen
        r = int(torch.randint(self.seen + 1, (1,), generator=generator))
        held = {cls: count for cls, count in self.counts.items() if count > 0}
        if r >= self.capacity and held.get(label, 0) >= median(held.values()):  # numpy's median: mean of the middle two
            return -1
        largest = min(cls for cls, count in held.items() if count == max(held.values()))  # numpy's argmax: the first
        return int((self.labels == largest).nonzero().squeeze(1)[r % held[largest]])

    def draw(self, size: int, classes: int, generator: torch.Generator) -> Tensor:
        """Row indices of a graph batch of ``min(size, len(self))`` samples from
        ``classes`` classes (fewer if fewer qualify), balanced as the module says."""
        size = min(size, len(self))
        present, counts = self.held_labels().unique(return_counts=True)
        shares = balanced_shares(size, min(classes, len(present)))
        qualifying = present[counts >= shares[0]]
        while 0 < len(qualifying) < len(shares):
            shares = balanced_shares(size, len(qualifying))
            qualifying = present[counts >= shares[0]]
        if len(qualifying) == 0:
            return torch.randperm(len(self), generator=generator)[:size]
        chosen = qualifying[torch.randperm(len(qualifying), generator=generator)[: len(shares)]]
        rows = []
        for cls, share in zip(chosen.tolist(), shares.tolist(), strict=True):
            members = (self.held_labels() == cls).nonzero().squeeze(1)
            rows.append(members[torch.randperm(len(members), generator=generator)[:share]])
        return torch.cat(rows)

    def state(self) -> dict[str, Tensor]:
        """Plain tensors, so that a client's saved state runs no code when read back."""
        state = {"capacity": torch.tensor(self.capacity), "seen": torch.tensor(self.seen)}
        if self.inputs is not None:
            state |= {"inputs": self.inputs[: len(self)].cpu(), "labels": self.held_labels().clone()}
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], device: torch.device | str = "cpu") -> BalancedReservoir:
        reservoir = cls(int(state["capacity"]))
        reservoir.seen = int(state["seen"])
        if "inputs" in state:
            inputs, held = state["inputs"], len(state["labels"])
            reservoir.inputs = torch.zeros((reservoir.capacity, *inputs.shape[1:]), dtype=inputs.dtype, device=device)
            reservoir.inputs[:held], reservoir.labels[:held] = inputs.to(device), state["labels"]
            reservoir.counts.update(state["labels"].tolist())
        return reservoir


def balanced_shares(size: int, classes: int) -> Tensor:
    """``size`` split into ``classes`` shares: ``size // classes`` each, the remainder one per share from the first."""
    shares = torch.full((classes,), size // classes)
    shares[: size % classes] += 1
    return shares
