"""Matplotlib figures written to a run's eval folder (headless Agg backend)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unit_tf.files import atomic_path


def _pyplot():  # noqa: ANN202 - matplotlib's module
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # noqa: ANN001
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def confusion_matrix_png(matrix: np.ndarray, path: Path, title: str, names: Sequence[str] | None = None) -> Path:
    """Counts [true, predicted] as a heat map with the count in each cell; `names` label the classes."""
    plt = _pyplot()
    k = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(6, 5.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(k), yticks=range(k), xlabel="predicted", ylabel="true", title=title)
    if names is not None:
        ax.set_xticklabels(names, rotation=90 if max(map(len, names), default=0) > 2 else 0)
        ax.set_yticklabels(names)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] > threshold else "black")
    return _save(fig, path)


def accuracy_curve_png(steps: Sequence[float], curves: dict[str, Sequence[float]], path: Path, title: str,
                       baseline: float | None = None) -> Path:
    """Accuracy versus training step, one line per curve; `baseline` as a dashed horizontal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in curves.items():
        ax.plot(steps, values, marker=".", label=name)
    if baseline is not None:
        ax.axhline(baseline, linestyle="--", color="gray", label="source-only (target)")
    ax.set(xlabel="step", ylabel="accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, path)
