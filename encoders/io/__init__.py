"""The one place that opens media files.  Every decoder raises :class:`DecodeError` with a one-line
message that names the file; batch jobs catch it, count the file as skipped and go on."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


class DecodeError(ValueError):
    """A file could not be decoded into usable media.  ``str(err)`` is one line naming the file."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # keep it on one line
        super().__init__(f"{self.path}: {self.reason}")


class SkipCounter:
    """Counts files skipped by a batch job, with their one-line reasons, for the run's summary."""

    def __init__(self):
        self.errors: list[str] = []

    def add(self, err: Exception) -> None:
        self.errors.append(str(err).splitlines()[0] if str(err) else repr(err))

    def __len__(self) -> int:
        return len(self.errors)

    def summary(self, what: str = "files") -> str:
        if not self.errors:
            return f"skipped 0 {what}"
        shown = "\n  ".join(self.errors[:10])
        more = f"\n  ... and {len(self.errors) - 10} more" if len(self.errors) > 10 else ""
        return f"skipped {len(self.errors)} {what}:\n  {shown}{more}"


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temp path in ``path``'s folder (same suffix, so writers that pick a format by suffix
    work); on success it is renamed over ``path`` in one step, on failure removed.  A crash or a full
    disk never leaves a half-written output, and an old file stays whole until the new one is."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode())  # mkstemp's 0600 would hide the file from other users
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path: str | Path, write) -> Path:
    """``write(tmp_path)`` through :func:`atomic_path` (for writers that take a file name)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` through :func:`atomic_path`."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write a text file through :func:`atomic_path`."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


__all__ = ["DecodeError", "SkipCounter", "atomic_path", "atomic_write", "atomic_save", "atomic_write_text"]
