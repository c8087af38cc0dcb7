"""The arithmetic a client's training and projection run in on CUDA (``--precision``).

``fp32`` is PyTorch's default; ``tf32`` lets CUDA matrix products and convolutions
round their inputs to TensorFloat-32 (same range, 10-bit mantissa), the projection's
included; ``bf16`` runs the models' forward passes (``fit``, ``predict``) under
``torch.autocast`` in bfloat16, and only those: weights, optimiser, backward steps,
embeddings handed on and relative projections stay fp32. Both only pay on a GPU with
tensor cores, and both change the numbers, so they are opt-in. Off CUDA a precision
other than fp32 is a no-op with one warning per process: refusing a run over a speed
setting the machine cannot use would help nobody.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from relatlas.registries import PRECISIONS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """A registry entry: TF32 matrix products or not, and the autocast dtype of forward passes (None: none)."""

    tf32: bool = False
    autocast: torch.dtype | None = None


fp32 = Precision()
tf32 = Precision(tf32=True)
bf16 = Precision(autocast=torch.bfloat16)

_forward_dtype: contextvars.ContextVar[torch.dtype | None] = contextvars.ContextVar("forward_dtype", default=None)


@contextlib.contextmanager
def precision_scope(name: str, device: torch.device) -> Iterator[None]:
    """Run the block in precision ``name`` (a ``PRECISIONS`` entry) on ``device``: TF32 switches
    set (restored on exit), forward passes cast (``forward_autocast``). Off CUDA: fp32, warned once."""
    precision = PRECISIONS.get(name)
    if device.type != "cuda":
        if precision != fp32:
            _warn_off_cuda(name, device.type)
        yield
        return
    switches = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if precision.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    token = _forward_dtype.set(precision.autocast)
    try:
        yield
    finally:
        _forward_dtype.reset(token)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = switches


def forward_autocast(device: torch.device) -> contextlib.AbstractContextManager[None]:
    """Where a model's forward pass runs: under autocast when the enclosing ``precision_scope`` casts, on CUDA."""
    dtype = _forward_dtype.get()
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


@functools.cache
def _warn_off_cuda(name: str, device: str) -> None:
    log.warning("precision %s applies on CUDA only; this process computes on the %s in fp32", name, device)
