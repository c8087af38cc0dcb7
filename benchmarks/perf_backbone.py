"""``relatlas bench perf --sections backbone``: what caching a frozen backbone's
features saves. One client's training of a frozen torchvision backbone with a
trained projection is timed epoch by epoch: the first computes every row's
features, the later ones read them from memory (``clients/frozen_backbone.py``).
A later round's fresh model reads them from the client's cache file instead; that
read is timed too. The weights are a random-init file written here (their values do
not change the cost): nothing downloads."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from relatlas.benchmarks.datasets import load_dataset
from relatlas.clients.frozen_backbone import cache_frozen_features
from relatlas.clients.models import build_classifier
from relatlas.clients.training import TrainConfig, fit
from relatlas.safe_files import atomic_write, private_dir

ARCH = "resnet18"


def frozen_backbone_figures(dataset: str, data_root: str, *, rows: int, side: int, epochs: int, folder: Path) -> dict[str, Any]:
    """Seconds of the first and the later epochs of a frozen ``ARCH`` on ``rows`` training rows resized to ``side``."""
    data = load_dataset(dataset, data_root or None, 0)
    x, y = data.x_train[:rows].copy(), data.y_train[:rows].copy()  # writable: torch warns on the cached read-only arrays
    weights = private_dir(Path(folder)) / f"{ARCH}-random.pt"
    with atomic_write(weights) as file:
        torch.save(torchvision.models.get_model(ARCH).state_dict(), file)
    spec = f"torchvision:arch={ARCH}:weights={weights}:size={side}"

    def model() -> torch.nn.Module:
        return build_classifier(data.input_shape, data.num_classes, encoder=spec)

    trained, ends = model(), []
    started = time.perf_counter()
    fit(trained, x, y, TrainConfig(epochs=epochs), after_epoch=lambda: ends.append(time.perf_counter()))
    seconds = np.diff([started, *ends])
    cache = Path(folder) / "client-state" / "partition-0"
    cache_frozen_features(trained, x, cache)  # writes the file from memory: nothing recomputed
    fresh = model()
    read_started = time.perf_counter()
    cache_frozen_features(fresh, x, cache)
    read = time.perf_counter() - read_started
    later = float(seconds[1:].mean())
    return {
        "arch": ARCH, "rows": len(x), "side": side, "epochs": epochs,
        "first_epoch_seconds": float(seconds[0]), "later_epoch_seconds": later,
        "later_epoch_speedup": float(seconds[0]) / later, "cache_read_seconds": read,
    }  # fmt: skip


def backbone_table(figures: dict[str, Any]) -> list[str]:
    """The section's rows of ``relatlas bench perf``'s Markdown table."""
    setting = f"frozen {figures['arch']}, {figures['rows']} rows at {figures['side']}x{figures['side']}"
    return [
        "", f"| {setting} | seconds |", "|---|---|",
        f"| first epoch (features computed) | {figures['first_epoch_seconds']:.2f} |",
        f"| later epochs (mean of {figures['epochs'] - 1}; features cached) | {figures['later_epoch_seconds']:.2f} |",
        f"| a later round's cache read | {figures['cache_read_seconds']:.3f} |",
        f"| `later_epoch_speedup` (target >= 5) | {figures['later_epoch_speedup']:.1f} |",
    ]  # fmt: skip
