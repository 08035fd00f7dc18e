"""Gate heatmaps: what the i, f, g, o gates and the cell c did over a sequence."""
from __future__ import annotations

from pathlib import Path

import torch


def plot_gates(trace: dict[str, torch.Tensor], path: str | Path, item: int = 0, max_units: int = 64,
               title: str | None = None) -> Path:
    """Save a PNG with one heatmap (units × steps) per gate of one traced sequence.

    Args:
        trace: one entry of ``LSTM.trace_gates`` (dict of i, f, g, o, c; each (B, T, H)).
        path: PNG to write.
        item: which sequence of the batch.
        max_units: show at most this many hidden units.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [("i", "input gate", "viridis", (0, 1)), ("f", "forget gate", "viridis", (0, 1)),
             ("g", "candidate", "coolwarm", (-1, 1)), ("o", "output gate", "viridis", (0, 1)),
             ("c", "cell state", "coolwarm", None)]
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.0 * len(names)), sharex=True)
    for ax, (key, label, cmap, lim) in zip(axes, names):
        data = trace[key][item, :, :max_units].detach().float().cpu().numpy().T  # (units, T)
        if lim is None:
            m = float(abs(data).max()) or 1.0
            lim = (-m, m)
        im = ax.imshow(data, aspect="auto", cmap=cmap, vmin=lim[0], vmax=lim[1], interpolation="nearest")
        ax.set_ylabel(f"{label}\nunit")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
