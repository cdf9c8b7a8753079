"""Training curves of a run as one PNG: loss, learning rate and every metric against epoch."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the Agg backend must be chosen first)

from vision_core.storage.atomic import write_atomic  # noqa: E402


def curve_panels(history: list[dict[str, float]]) -> dict[str, list[str]]:
    """``{panel title: [history keys]}``: a train metric and its ``val_`` twin share a panel."""
    keys = [k for row in history for k in row if k != "epoch"]
    keys = list(dict.fromkeys(keys))
    panels: dict[str, list[str]] = {}
    for key in keys:
        base = key[4:] if key.startswith("val_") else key
        panels.setdefault(base, []).append(key)
    return panels


def plot_history(history: list[dict[str, float]], path: str | Path) -> Path:
    """Write the curves of ``history`` (rows with ``epoch`` and numeric values) to ``path`` (PNG)."""
    panels = curve_panels(history)
    columns = min(3, max(len(panels), 1))
    rows = -(-max(len(panels), 1) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, (title, keys) in zip(axes.flat, panels.items()):
        for key in keys:
            points = [(row["epoch"], row[key]) for row in history if key in row]
            ax.plot(*zip(*points), marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return write_atomic(path, buffer.getvalue())
