"""The confusion matrix of a classifier as a PNG: counts in the cells, colour by row share.

Rows are true classes and columns predicted classes (``classification_metrics()["confusion_matrix"]``).
A cell's colour is its share of its row (the class's recall on the diagonal), so rare and
common classes read alike; its text is the count. Drawn on matplotlib's Agg canvas directly
(no pyplot state) and written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vision_core.storage.atomic import write_atomic

MAX_ANNOTATED_CLASSES = 30  # above this many classes the counts no longer fit in their cells


def plot_confusion_matrix(
    matrix: np.ndarray | Sequence[Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "confusion matrix",
    unit: str = "images",
) -> Path:
    """Write ``matrix`` (int [K, K], rows = true class, columns = predicted) to ``path`` (PNG); returns the path.

    Colour is the row-normalised share in [0, 1] (an empty row stays blank); each cell shows its
    count when there are at most :data:`MAX_ANNOTATED_CLASSES` classes. ``unit`` names what the cells count
    in the title (a segmenter's matrix counts pixels).
    """
    matrix = np.asarray(matrix)
    classes = len(class_names)
    if matrix.shape != (classes, classes):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {classes} class names")
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    side = min(4 + 0.45 * classes, 30)
    figure = Figure(figsize=(side + 1.5, side), dpi=100)
    axes = figure.add_subplot()
    shown = axes.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(shown, ax=axes, fraction=0.046, pad=0.04, label="share of the true class")
    axes.set(
        xticks=range(classes),
        yticks=range(classes),
        xlabel="predicted class",
        ylabel="true class",
        title=f"{title} ({int(matrix.sum())} {unit})",
    )
    axes.set_xticklabels(class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticklabels(class_names)
    if classes <= MAX_ANNOTATED_CLASSES:
        for (row, column), count in np.ndenumerate(matrix):
            axes.text(
                column,
                row,
                str(int(count)),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[row, column] > 0.5 else "black",
            )
    figure.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return write_atomic(path, buffer.getvalue())
