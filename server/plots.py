"""PNG figures of a run: the merged and centralised spaces in 2-D, and the
accuracy of every space."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from torch import Tensor  # noqa: E402

from relatlas.safe_files import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    """The figure as a PNG at ``path``, written without following a planted link (``relatlas/safe_files.py``)."""
    with atomic_write(path) as file:
        fig.savefig(file, format="png", dpi=100)
    plt.close(fig)
    return path


def pca_2d(space: Tensor) -> np.ndarray:
    """First two principal components (deterministic SVD, sign fixed by the largest loading)."""
    centred = (space - space.mean(dim=0)).double()
    _, _, vt = torch.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    return (centred @ (components * signs).T).numpy()


def plot_spaces(spaces: Mapping[str, Tensor], labels: np.ndarray, title: str, path: Path) -> Path:
    """Each space's first two principal components, one colour per class (a legend, not a scale)."""
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4.8), squeeze=False)
    colours = plt.get_cmap("tab20" if labels.max() >= 10 else "tab10")
    for ax, (name, space) in zip(axes[0], spaces.items()):
        points = pca_2d(space)
        for cls in np.unique(labels):
            chosen = labels == cls
            ax.scatter(points[chosen, 0], points[chosen, 1], color=colours(int(cls) % colours.N), s=4, label=str(cls))
        ax.set_title(f"{name} (PCA)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(*axes[0][0].get_legend_handles_labels(), title="class", loc="center right", markerscale=3, fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def plot_accuracies(results: Mapping[str, Any], title: str, path: Path) -> Path:
    """Bars for each client's own space next to the merged and reference spaces."""
    bars = {f"client {p}": acc for p, acc in zip(results["client_partitions"], results["client_accuracy"])}
    for key, label in (("merged_accuracy", "merged"), ("concat_accuracy", "concat rel."),
                       ("concat_absolute_accuracy", "concat abs."), ("centralized_accuracy", "centralised"),
                       ("owner_accuracy", "owner (leaks labels)"), ("owner_shuffled_accuracy", "owner shuffled")):  # fmt: skip
        if results.get(key) is not None:
            bars[label] = results[key]
    fig, ax = plt.subplots(figsize=(1.2 * len(bars) + 2, 4))
    colors = ["tab:gray" if name.startswith("client") else "tab:blue" for name in bars]
    ax.bar(list(bars), list(bars.values()), color=colors)
    ax.set_ylabel("probe accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return _save(fig, path)


def _matrix_array(matrix: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)


def plot_accuracy_matrix(matrix: list[list[float | None]], title: str, path: Path) -> Path:
    """Heatmap: row = after training experience i, column = experience j."""
    values = _matrix_array(matrix)
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(values), 0.8 + 0.7 * len(values)))
    image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black", fontsize=8)
    ax.set_xlabel("evaluated on experience")
    ax.set_ylabel("after training experience")
    ax.set_xticks(range(values.shape[1]))
    ax.set_yticks(range(len(values)))
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="accuracy")
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_curves(matrix: list[list[float | None]], title: str, path: Path) -> Path:
    """One line per experience: its accuracy after each later experience."""
    values = _matrix_array(matrix)
    fig, ax = plt.subplots(figsize=(6, 4))
    steps = np.arange(len(values))
    for j in range(values.shape[1]):
        ax.plot(steps[j:], values[j:, j], marker="o", label=f"experience {j}")
    ax.set_xlabel("after training experience")
    ax.set_xticks(steps)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_client_curves(curves: Mapping[str, Any], title: str, path: Path) -> Path:
    """Round by round (``server/client_curves.py``): each client's own space (solid) and
    own model on its held-back rows (dashed), the merged space and the clients' mean test accuracy."""
    rounds = curves["rounds"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colours = plt.get_cmap("tab10")
    for i, (partition, client) in enumerate(curves["clients"].items()):
        for key, style, what in (("client_accuracy", "-", "own space"), ("client_local_test_accuracy", "--", "local test")):
            if key in client:
                values = [np.nan if v is None else v for v in client[key]]
                ax.plot(rounds, values, style, marker="o", color=colours(i % 10), label=f"client {partition}, {what}")
    for key, style, label in (("merged_accuracy", "-", "merged"), ("average_client_test_accuracy", "--", "average client test")):
        if key in curves:
            values = [np.nan if v is None else v for v in curves[key]]
            ax.plot(rounds, values, style, marker="s", color="black", linewidth=2.5, label=label)
    ax.set_xlabel("round")
    ax.set_xticks(rounds)
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    return _save(fig, path)


def plot_scale_rows(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """``bench perf``'s scale rows: round seconds and the server's peak MB against the clients
    (log), rows that train a sample of their clients drawn hollow and labelled."""
    clients = [r["clients"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, scale, label in ((axes[0], "round_seconds", 1.0, "round seconds"),
                                  (axes[1], "server_peak_bytes", 1e-6, "server peak MB")):  # fmt: skip
        values = [r[key] * scale for r in rows]
        ax.plot(clients, values, color="tab:blue", marker="o")
        for r, x, y in zip(rows, clients, values):
            if r["clients_per_round"] < r["clients"]:
                ax.plot([x], [y], marker="o", markersize=10, markerfacecolor="white", color="tab:blue")
                ax.annotate(
                    f"{r['clients_per_round']:,} a round", (x, y), textcoords="offset points", xytext=(-10, 8), ha="right"
                )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))  # 1,000 rather than 10^3
        ax.set_ylim(bottom=0)
        ax.set_xlabel("clients")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[1].axhline(500, color="tab:red", linestyle="--", linewidth=1, label="target at 1,000 clients: < 500 MB")
    axes[1].legend(fontsize=8, loc="upper left")
    fig.suptitle("relatlas bench perf: one round against the clients")
    fig.tight_layout()
    return _save(fig, path)
