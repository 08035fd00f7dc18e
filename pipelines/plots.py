"""PNG figures shared by the pipelines: loss curves, confusion matrices."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write (creating folders) and close a matplotlib figure."""
    plt = _plt()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
                xlabel: str = "step", ylabel: str = "loss", title: str | None = None, logy: bool = False) -> Path:
    """One line per name: ``curves = {name: (xs, ys)}``."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, (xs, ys) in curves.items():
        if len(xs):
            ax.plot(xs, ys, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    cm = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    return cm


def plot_confusion(cm: np.ndarray, labels: Sequence[str], path: str | Path, title: str | None = None) -> Path:
    """Row-normalised confusion matrix (rows: truth, columns: prediction) with counts written in."""
    plt = _plt()
    n = len(labels)
    size = max(5, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=90)
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def classification_report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict:
    """``{"accuracy", "per_class": {label: accuracy or None}, "n", "confusion": [[...]]}``."""
    cm = confusion_matrix(y_true, y_pred, len(labels))
    n = int(cm.sum())
    per = {lab: (float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None) for i, lab in enumerate(labels)}
    return {"accuracy": float(np.trace(cm) / n) if n else 0.0, "per_class": per, "n": n, "confusion": cm.tolist()}
