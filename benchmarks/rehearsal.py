"""Where an Avalanche strategy keeps its replay buffer, and how to persist it
as plain tensors: nothing a client reads back from its state runs code.

``Replay`` keeps it in a ``ReplayPlugin``, ``ER_ACE`` and ``DER`` on the strategy
itself; ``Naive`` has none. A plugin may keep a memory of its own (CaSpeR's
balanced reservoir): one with ``memory_state`` and ``load_memory_state`` is saved
and restored beside the buffer, under its class name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import torch
from avalanche.benchmarks.utils import _make_taskaware_classification_dataset, make_avalanche_dataset
from avalanche.benchmarks.utils.data import AvalancheDataset
from avalanche.benchmarks.utils.data_attribute import TensorDataAttribute
from avalanche.benchmarks.utils.flat_data import FlatData
from avalanche.training.storage_policy import ExemplarsBuffer, ReservoirSamplingBuffer
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor
from torch.utils.data import TensorDataset

LOGITS_ITEM = 3  # a DER buffer item: (input, label, task label, logits)


@runtime_checkable
class KeepsMemory(Protocol):
    """A plugin whose samples must outlive the strategy, as the replay buffer does."""

    def memory_state(self) -> dict[str, Tensor]: ...

    def load_memory_state(self, state: Mapping[str, Tensor]) -> None: ...


def _memory_plugins(strategy: SupervisedTemplate) -> dict[str, KeepsMemory]:
    """The strategy's plugins with a memory of their own, by the prefix of their saved keys."""
    return {f"{type(plugin).__name__}/": plugin for plugin in strategy.plugins if isinstance(plugin, KeepsMemory)}


def _buffer_owner(strategy: SupervisedTemplate) -> object | None:
    """The strategy or plugin holding a ``storage_policy``."""
    owners = (strategy, *strategy.plugins)
    return next((owner for owner in owners if isinstance(getattr(owner, "storage_policy", None), ExemplarsBuffer)), None)


def replay_storage(strategy: SupervisedTemplate) -> ExemplarsBuffer | None:
    """The strategy's storage policy, or ``None`` if it rehearses nothing."""
    owner = _buffer_owner(strategy)
    return None if owner is None else owner.storage_policy


def buffer_arrays(buffer: AvalancheDataset) -> tuple[Tensor, Tensor] | None:
    """(inputs, labels) of every buffer sample, or ``None`` for an empty buffer."""
    if len(buffer) == 0:
        return None
    items = [buffer[i] for i in range(len(buffer))]
    return torch.stack([item[0] for item in items]), torch.as_tensor([int(item[1]) for item in items])


def save_buffer(strategy: SupervisedTemplate) -> dict[str, Tensor]:
    """The storage policy as plain tensors (empty if none), which ``torch.load(...,
    weights_only=True)`` and Flower's ``ArrayRecord`` carry without pickle: per
    group, in order, its key, capacity, reservoir weights, inputs, labels and (DER)
    logits; and the policy's own counters; then each plugin's own memory."""
    plugins = _memory_plugins(strategy).items()
    memories = {prefix + key: value for prefix, plugin in plugins for key, value in plugin.memory_state().items()}
    storage = replay_storage(strategy)
    if storage is None:
        return memories
    groups = torch.tensor(list(storage.buffer_groups), dtype=torch.long)
    state = memories | {"max-size": torch.tensor(storage.max_size), "groups": groups}
    if hasattr(storage, "_num_exps"):
        state["num-experiences"] = torch.tensor(storage._num_exps)
    if hasattr(storage, "seen_classes"):
        state["seen-classes"] = torch.tensor(list(storage.seen_classes), dtype=torch.long)
    for i, group in enumerate(storage.buffer_groups.values()):
        state |= {f"{i}/max-size": torch.tensor(group.max_size), f"{i}/weights": group._buffer_weights.clone()}
        arrays = buffer_arrays(group.buffer)
        if arrays is not None:
            state[f"{i}/inputs"], state[f"{i}/labels"] = arrays
            if len(group.buffer[0]) > LOGITS_ITEM:  # DER keeps the logits it saw beside each sample
                state[f"{i}/logits"] = torch.stack([group.buffer[j][LOGITS_ITEM] for j in range(len(group.buffer))])
    return state


def _group(state: Mapping[str, Tensor], i: int) -> ReservoirSamplingBuffer:
    """Group ``i`` of a saved storage policy, as an Avalanche reservoir buffer."""
    group = ReservoirSamplingBuffer(int(state[f"{i}/max-size"]))
    group._buffer_weights = state[f"{i}/weights"]
    if f"{i}/inputs" in state:
        labels = state[f"{i}/labels"]
        dataset = _make_taskaware_classification_dataset(
            TensorDataset(state[f"{i}/inputs"], labels), targets=labels.tolist(), task_labels=0
        )
        if f"{i}/logits" in state:
            logits = FlatData([state[f"{i}/logits"]], discard_elements_not_in_indices=True)
            attribute = TensorDataAttribute(logits, name="logits", use_in_getitem=True)
            dataset = make_avalanche_dataset(dataset, data_attributes=[attribute])
        group.buffer = dataset
    return group


def restore_buffer(strategy: SupervisedTemplate, state: Mapping[str, Tensor]) -> None:
    """Put a storage policy saved by ``save_buffer`` back where the strategy looks for it, and each plugin's own memory."""
    for prefix, plugin in _memory_plugins(strategy).items():
        memory = {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
        if memory:
            plugin.load_memory_state(memory)
    if "max-size" not in state:
        return
    storage = replay_storage(strategy)
    if storage is None:
        raise ValueError(f"saved replay buffer, but {type(strategy).__name__} has no storage policy to restore it into")
    storage.max_size = int(state["max-size"])
    if "num-experiences" in state:
        storage._num_exps = int(state["num-experiences"])
    if "seen-classes" in state:
        storage.seen_classes = set(state["seen-classes"].tolist())
    storage.buffer_groups = {int(key): _group(state, i) for i, key in enumerate(state["groups"].tolist())}
