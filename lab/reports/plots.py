"""Figures of a run, built from plain numbers and arrays; rendered once to pixels, saved as PNG."""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on training machines
import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from core.io import write_bytes_atomic  # noqa: E402
from lab.reports.analysis import WorstImage, row_normalised  # noqa: E402

MAX_ANNOTATED_CLASSES = 20  # beyond this, numbers in the cells are unreadable


def series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of one metric, skipping epochs that lack it."""
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    return [e for e, _ in points], [v for _, v in points]


def curves_figure(history: list[dict], title: str = "", boundary: int | None = None) -> Figure:
    """Loss and accuracy per epoch, train vs validation, side by side; a dotted line after epoch
    `boundary` where a transfer run's fine-tuning phase starts."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "acc"), ("Loss", "Accuracy")):
        for split, style in (("train", "o-"), ("val", "s--")):
            epochs, values = series(history, f"{split}/{metric}")
            ax.plot(epochs, values, style, label="train" if split == "train" else "validation")
        if boundary is not None:
            ax.axvline(boundary + 0.5, color="gray", linestyle=":", label="fine-tuning starts")
        ax.set(title=label, xlabel="epoch", ylabel=label.lower())
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def confusion_figure(counts: np.ndarray, class_names, title: str = "") -> Figure:
    """Two panels: counts, and row-normalised percentages (each true class sums to 100)."""
    from sklearn.metrics import ConfusionMatrixDisplay  # slow import (seconds); compare.py never needs it

    n = len(class_names)
    side = min(14.0, max(4.5, 0.45 * n + 2.5))  # 100 classes must not give a 10000-pixel image
    fig = Figure(figsize=(2 * side + 1, side), layout="constrained")
    annotate = n <= MAX_ANNOTATED_CLASSES
    rotation = 45 if max(len(str(c)) for c in class_names) > 3 else "horizontal"
    panels = ((counts, "d", "Counts"), (100 * row_normalised(counts), ".0f", "Row-normalised (% of true class)"))
    for ax, (matrix, fmt, name) in zip(fig.subplots(1, 2), panels):
        ConfusionMatrixDisplay(matrix, display_labels=list(class_names)).plot(
            ax=ax, include_values=annotate, values_format=fmt, cmap="Blues", xticks_rotation=rotation)
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    return fig


def worst_figure(images: np.ndarray, worst: list[WorstImage], class_names, cols: int = 5) -> Figure:
    """Grid of the given images in list order, with true class, prediction and P(true)."""
    rows = math.ceil(len(worst) / cols)
    ncols = min(cols, len(worst))
    fig = Figure(figsize=(2.3 * ncols, 3.1 * rows + 0.4), layout="constrained")
    fig.suptitle(f"{len(worst)} worst classified images (rank 1 = lowest P(true))")
    axes = np.atleast_1d(fig.subplots(rows, ncols, squeeze=False).ravel())
    for ax in axes:
        ax.axis("off")
    for ax, w in zip(axes, worst):
        _show(ax, images[w.index])
        ax.set_title(f"#{w.rank}  (idx {w.index})\ntrue: {class_names[w.true]}\n"
                     f"pred: {class_names[w.pred]}\nP(true) = {_prob(w.true_prob)}", fontsize=9)
    return fig


def augmented_figure(originals: np.ndarray, augmented: np.ndarray, description: str, cols: int = 8) -> Figure:
    """uint8 images before and after augmentation: each row of originals above the same images augmented."""
    pairs = math.ceil(len(originals) / cols)
    ncols = min(cols, len(originals))
    fig = Figure(figsize=(1.4 * ncols, 2.9 * pairs + 0.5), layout="constrained")
    fig.suptitle(f"Training images before and after augmentation ({description})")
    axes = fig.subplots(2 * pairs, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i, (before, after) in enumerate(zip(originals, augmented)):
        row, col = 2 * (i // cols), i % cols
        for ax, image, label in ((axes[row, col], before, "original"), (axes[row + 1, col], after, "augmented")):
            _show(ax, image)
            ax.set_title(label, fontsize=8)
    return fig


def _show(ax, image: np.ndarray) -> None:
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")


def _prob(p: float) -> str:
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def val_curves_figure(runs: list[tuple[str, list[dict]]]) -> Figure:
    """Validation accuracy and loss per epoch of several runs, one line per (label, history)."""
    fig = Figure(figsize=(12, 4.5 + 0.15 * len(runs)), layout="constrained")
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, history in runs:
        acc_ax.plot(*series(history, "val/acc"), "o-", markersize=3, label=label)
        loss_ax.plot(*series(history, "val/loss"), "o-", markersize=3, label=label)
    for ax, name in ((acc_ax, "Validation accuracy"), (loss_ax, "Validation loss")):
        ax.set(title=name, xlabel="epoch", ylabel=name.split()[1])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    ncols = 1 if len(runs) < 4 else 2
    fig.legend(*acc_ax.get_legend_handles_labels(), loc="outside lower center", ncols=ncols, fontsize=8)
    return fig


PROFILE_PARTS = (("compute_ms", "compute (forward, backward, optimizer)"), ("data_ms", "data pipeline"),
                 ("overhead_ms", "framework's loop"))


def profile_figure(profiles: list[tuple[str, dict]]) -> Figure:
    """A steady training step of each (label, results.json profile) as a stacked horizontal bar in ms; a negative
    overhead (data prepared while the step computes) is drawn as zero."""
    fig = Figure(figsize=(7, 0.9 + 0.45 * len(profiles)), layout="constrained")
    ax = fig.subplots()
    labels = [label for label, _ in profiles]
    left = np.zeros(len(profiles))
    for key, name in PROFILE_PARTS:
        widths = np.array([max(profile[key], 0.0) for _, profile in profiles])
        ax.barh(labels, widths, left=left, label=name)
        left += widths
    ax.invert_yaxis()
    ax.set(xlabel="ms per training step", title="Where a steady training step goes")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)
    return fig


def to_array(fig: Figure) -> np.ndarray:
    """The figure rendered once, as an H x W x 4 uint8 array (what the PNG holds, and what TensorBoard shows)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    mpimg.imsave(buf, array, format="png")
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path) -> np.ndarray:
    """Write the figure as a PNG atomically; returns its pixels."""
    array = to_array(fig)
    write_bytes_atomic(path, png_bytes(array))
    return array


def png_to_array(png: bytes | str | Path) -> np.ndarray:
    """PNG bytes (or a PNG file) as an H x W x 3 or 4 uint8 array, e.g. for TensorBoard's Images tab."""
    source = io.BytesIO(png) if isinstance(png, (bytes, bytearray)) else str(png)
    array = mpimg.imread(source, format="png")  # float in [0, 1] for PNGs
    if array.dtype != np.uint8:
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return np.stack([array] * 3, axis=-1) if array.ndim == 2 else array
