"""Where an Avalanche strategy keeps its replay buffer, and how to persist it.

``Replay`` keeps it in a ``ReplayPlugin``, ``ER_ACE`` and ``DER`` on the strategy
itself; ``Naive`` has none.
"""

from __future__ import annotations

import io
import pickle

import torch
from avalanche.benchmarks.utils.data import AvalancheDataset
from avalanche.training.storage_policy import ExemplarsBuffer
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor


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


class _CompactPickler(pickle.Pickler):
    """Pickles a tensor view without the rest of its storage: Avalanche keeps buffer
    indices as 0-d views of the whole experience's index tensor."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, Tensor) and obj.untyped_storage().nbytes() > obj.nelement() * obj.element_size():
            return obj.clone().__reduce_ex__(pickle.HIGHEST_PROTOCOL)
        return NotImplemented


def save_buffer(strategy: SupervisedTemplate) -> bytes:
    """The storage policy as bytes (b"" if none); samples pickle as dataset row
    indices (``streams.DatasetRows``), DER's logits as values."""
    storage = replay_storage(strategy)
    if storage is None:
        return b""
    out = io.BytesIO()
    _CompactPickler(out, pickle.HIGHEST_PROTOCOL).dump(storage)
    return out.getvalue()


def restore_buffer(strategy: SupervisedTemplate, saved: bytes) -> None:
    """Put a saved storage policy back where the strategy looks for it. The bytes
    are this client's own ``context.state``, never a message from the network."""
    if not saved:
        return
    owner = _buffer_owner(strategy)
    if owner is None:
        raise ValueError(f"saved replay buffer, but {type(strategy).__name__} has no storage policy to restore it into")
    owner.storage_policy = pickle.loads(saved)  # noqa: S301 - local state written by save_buffer
