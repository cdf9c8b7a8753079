"""A classifier's evaluation as PNGs: the confusion matrix, ROC and precision-recall curves, calibration.

The curves come from :func:`~vision_core.classification.evaluate.clinical_metrics` (its ``curves``).

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


def _figure(side: float = 5.5) -> tuple[Figure, object]:
    figure = Figure(figsize=(side, side), dpi=100)
    return figure, figure.add_subplot()


def _write(figure: Figure, path: str | os.PathLike) -> Path:
    figure.tight_layout()
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return write_atomic(path, buffer.getvalue())


def _auc_label(name: str, metrics: dict | None) -> str:
    """``name``, with its ROC AUC and CI when known."""
    if not metrics or metrics.get("roc_auc") is None:
        return name
    ci = metrics.get("roc_auc_ci")
    interval = f" [{ci['low']:.3f}, {ci['high']:.3f}]" if ci else ""
    return f"{name} (AUC {metrics['roc_auc']:.3f}{interval})"


def plot_roc_curves(metrics: dict, path: str | os.PathLike, title: str = "ROC") -> Path:
    """The one-vs-rest ROC curve of every class of :func:`~vision_core.classification.evaluate.clinical_metrics`'
    dict (``curves.roc``), with its AUC and CI in the legend, and the patient-level curves dashed when the dict
    has them; the chance diagonal dotted. Written to ``path`` (PNG)."""
    figure, axes = _figure()
    levels = [("", metrics)] + ([("patient ", metrics["patient"])] if "patient" in metrics else [])
    for prefix, level in levels:
        for name, curve in level["curves"]["roc"].items():
            axes.step(
                curve["fpr"],
                curve["tpr"],
                where="post",
                linestyle="--" if prefix else "-",
                label=_auc_label(prefix + name, level["per_class"].get(name)),
            )
    axes.plot([0, 1], [0, 1], ":", color="grey")
    axes.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)", title=title)
    axes.set(xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(fontsize=7, loc="lower right")
    return _write(figure, path)


def plot_pr_curves(metrics: dict, path: str | os.PathLike, title: str = "precision-recall") -> Path:
    """The precision-recall curve of every class (``curves.pr``), with its average precision in the legend."""
    figure, axes = _figure()
    for name, curve in metrics["curves"]["pr"].items():
        ap = metrics["per_class"][name].get("average_precision")
        label = name if ap is None else f"{name} (AP {ap:.3f})"
        axes.step(curve["recall"], curve["precision"], where="post", label=label)
    axes.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title=title, xlim=(0, 1), ylim=(0, 1.01))
    axes.legend(fontsize=7, loc="lower left")
    return _write(figure, path)


def plot_calibration(metrics: dict, path: str | os.PathLike, title: str = "calibration") -> Path:
    """The reliability diagram (``curves.calibration``): observed frequency against mean confidence per bin,
    marker area by the bin's count, the diagonal of perfect calibration, and the ECE in the title."""
    figure, axes = _figure()
    bins = metrics["curves"]["calibration"]
    counts = np.asarray(bins["count"], np.float64)
    sizes = 20 + 200 * counts / max(counts.max(), 1) if len(counts) else 20
    axes.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    axes.plot(bins["confidence"], bins["accuracy"], "-", color="tab:blue")
    axes.scatter(bins["confidence"], bins["accuracy"], s=sizes, color="tab:blue", label="bins (area: images)")
    axes.set(
        xlabel="mean predicted probability",
        ylabel="observed frequency",
        title=f"{title} (ECE {metrics['ece']:.3f})",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(fontsize=7, loc="upper left")
    return _write(figure, path)
