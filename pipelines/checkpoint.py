"""One checkpoint format for every pipeline: a plain dict, written atomically, read with weights_only=True."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def save_checkpoint(obj: dict, path: str | Path) -> Path:
    """Write ``obj`` to ``path`` through a temp file in the same folder and an atomic rename,
    so that a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - one clear line naming the file
        raise ValueError(f"{path}: not a readable lstm-media checkpoint ({type(e).__name__}: {e})") from None
