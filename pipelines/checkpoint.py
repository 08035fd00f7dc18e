"""One checkpoint format for every pipeline: a plain dict, written atomically, read with weights_only=True."""
from __future__ import annotations

from pathlib import Path

import torch

from encoders.io import atomic_save

from .bundle import BundleError


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file + rename), so that a crash never leaves a
    half-written checkpoint."""
    return atomic_save(obj, path)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear line naming the file
        reason = " ".join(str(e).split())[:200]
        raise BundleError(f"{path}: not a readable lstm-media checkpoint ({type(e).__name__}: {reason})") from None
