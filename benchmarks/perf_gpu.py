"""``relatlas bench perf --sections gpu``: relatlas's CUDA paths against what the GPU does without it.

Each figure is a ratio measured in one run on one CUDA device, timed between
``torch.cuda.synchronize`` calls (fastest of ``repeats`` after a warm-up); 1 means
relatlas is as fast as the reference, more is faster:

- ``fit_resident_vs_loop``: a hand-written training loop with the data on the device
  (same MLP, rows, epochs, batch size, Adam) over relatlas's ``fit``;
- ``projection_vs_gemm_gpu``: one matrix product over the cosine projection of its shape;
- ``l2_vs_cdist_gpu``, ``l1_vs_cdist_gpu``: one ``torch.cdist`` call over the blocked
  projection asked for 1,024-row blocks, the request that was launch-bound (CUDA sizes
  the blocks by free memory, ``aggregation/block_rows.py``); the results must agree;
- ``bf16_speedup``, ``tf32_speedup``: a client's ``fit`` (the CNN ``auto`` picks for
  28x28 images) in fp32 over the same in ``--precision bf16`` / ``tf32``.

The inputs are seeded random tensors of Fashion-MNIST's shape: nothing is read or
downloaded. Without a CUDA device the section is ``{"skipped": ...}``, with a line saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from relatlas.aggregation.projection import relative_projection
from relatlas.clients.models import build_classifier
from relatlas.clients.precision import precision_scope
from relatlas.clients.training import TrainConfig, fit

IMAGE = (1, 28, 28)  # Fashion-MNIST's shape, 10 classes
FIT_ROWS, FIT_EPOCHS = 10_000, 2
TARGETS = {  # the section's figures, in table order, and the target each has (issue 23; "-": none)
    "fit_resident_vs_loop": ">= 0.9", "projection_vs_gemm_gpu": ">= 0.9", "l2_vs_cdist_gpu": ">= 0.9",
    "l1_vs_cdist_gpu": ">= 0.9", "bf16_speedup": "-", "tf32_speedup": "-",
}  # fmt: skip


def gpu_figures(gemm_shape: tuple[int, int, int], distance_shape: tuple[int, int, int], repeats: int) -> dict[str, Any]:
    """The section's ratios on the current CUDA device, or why there are none."""
    if not torch.cuda.is_available():
        reason = "no CUDA device (torch.cuda.is_available() is false): the GPU figures are unmeasured"
        print(f"perf: gpu skipped: {reason}", flush=True)
        return {"skipped": reason}
    device = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    figures: dict[str, Any] = {"device": torch.cuda.get_device_name(device)}
    n, d, m = gemm_shape
    x, anchors = torch.randn(n, d, generator=gen).to(device), torch.randn(m, d, generator=gen).to(device)
    gemm = cuda_seconds(lambda: x @ anchors.T, repeats)
    figures["projection_vs_gemm_gpu"] = gemm / cuda_seconds(lambda: relative_projection(x, anchors, "cosine"), repeats)
    n, d, m = distance_shape
    x, anchors = torch.randn(n, d, generator=gen).to(device), torch.randn(m, d, generator=gen).to(device)
    for figure, name, p in (("l2_vs_cdist_gpu", "euclidean", 2.0), ("l1_vs_cdist_gpu", "l1", 1.0)):
        figures[figure] = _blocked_vs_cdist(x, anchors, name, p, repeats)
    x_train = torch.randn(FIT_ROWS, *IMAGE, generator=gen).numpy()
    y_train = torch.randint(0, 10, (FIT_ROWS,), generator=gen).numpy()
    relatlas_fit = cuda_seconds(lambda: _fit("mlp", x_train, y_train), repeats)
    figures["fit_resident_vs_loop"] = cuda_seconds(lambda: _device_loop(x_train, y_train, device), repeats) / relatlas_fit
    fp32 = cuda_seconds(lambda: _fit("cnn", x_train, y_train), repeats)
    for precision in ("bf16", "tf32"):
        with precision_scope(precision, device):
            figures[f"{precision}_speedup"] = fp32 / cuda_seconds(lambda: _fit("cnn", x_train, y_train), repeats)
    return figures | {"gemm_shape": list(gemm_shape), "distance_shape": list(distance_shape), "fit_rows": FIT_ROWS}


def _blocked_vs_cdist(x: torch.Tensor, anchors: torch.Tensor, name: str, p: float, repeats: int) -> float:
    """One ``cdist`` call's seconds over the projection's asked for 1,024-row blocks; their results must agree."""
    blocked = lambda: relative_projection(x, anchors, name, block_elements=1024 * anchors.shape[0])  # noqa: E731
    whole = lambda: torch.cdist(x, anchors, p=p)  # noqa: E731
    if not torch.allclose(blocked(), whole(), rtol=1e-4, atol=1e-4):
        raise AssertionError(f"blocked {name} differs from torch.cdist on {torch.cuda.get_device_name(x.device)}")
    return cuda_seconds(whole, repeats) / cuda_seconds(blocked, repeats)


def cuda_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``fn`` after one warm-up, each between device synchronisations."""
    fn()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return min(times)


def _fit(encoder: str, x: np.ndarray, y: np.ndarray) -> None:
    """relatlas's ``fit`` of a fresh model: what a client runs each round."""
    fit(build_classifier(IMAGE, 10, encoder=encoder, seed=0), x, y, TrainConfig(epochs=FIT_EPOCHS))


def _device_loop(x: np.ndarray, y: np.ndarray, device: torch.device) -> None:
    """The reference: the same training written for the GPU by hand, data copied over once, shuffled there."""
    model = build_classifier(IMAGE, 10, encoder="mlp", seed=0).to(device).train()
    inputs, targets = torch.as_tensor(x).to(device), torch.as_tensor(y, dtype=torch.int64).to(device)
    config = TrainConfig(epochs=FIT_EPOCHS)
    optimizer, loss_fn = torch.optim.Adam(model.parameters(), lr=config.learning_rate), nn.CrossEntropyLoss()
    generator = torch.Generator(device=device).manual_seed(config.seed)
    for _ in range(config.epochs):
        for batch in torch.randperm(len(targets), generator=generator, device=device).split(config.batch_size):
            loss = loss_fn(model(inputs[batch]), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def gpu_table(figures: dict[str, Any]) -> list[str]:
    """The section's rows of ``relatlas bench perf``'s Markdown table (one line when skipped)."""
    if "skipped" in figures:
        return ["", f"GPU figures: skipped, {figures['skipped']}."]
    rows = [f"| `{name}` | {figures[name]:.2f} | {target} |" for name, target in TARGETS.items()]
    return ["", f"| GPU figure ({figures['device']}) | value | target |", "|---|---|---|", *rows]
