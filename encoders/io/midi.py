"""Reading and writing MIDI files: the only place in lstm-media that opens a ``.mid``.

Every failure is a :class:`~encoders.io.DecodeError` whose message is one line naming the file:
corrupt or non-MIDI bytes, no notes, only drum tracks, absurd tempos, absurd lengths.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Iterable

from . import DecodeError

MIDI_SUFFIXES = (".mid", ".midi")
MIN_BPM, MAX_BPM = 5.0, 1000.0  # outside this a tempo is a corrupt file, not music
MAX_SECONDS = 3600.0  # a note ending after an hour is a broken file (e.g. a bogus tempo map)


def read_midi(path: str | Path, allow_empty: bool = False):
    """Parse ``path`` into a ``pretty_midi.PrettyMIDI`` and check that it holds usable music.

    Args:
        path: a Standard MIDI File.
        allow_empty: accept files without any pitched note (e.g. to count them in ``stats``).
    Raises:
        DecodeError: unreadable, no notes, only drums, tempo outside [5, 1000] bpm, longer than an hour.
    """
    import pretty_midi

    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "no such file")
    data = path.read_bytes()
    if data[:4] != b"MThd":
        raise DecodeError(path, "not a MIDI file (no MThd header)")
    try:
        with warnings.catch_warnings():  # pretty_midi warns about type-0 files, meta events, ...
            warnings.simplefilter("ignore")
            pm = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - mido/pretty_midi raise many types; we promise one
        raise DecodeError(path, f"corrupt MIDI ({type(e).__name__}: {e})") from None
    _, tempi = pm.get_tempo_changes()
    for bpm in tempi:
        if not (MIN_BPM <= float(bpm) <= MAX_BPM):
            raise DecodeError(path, f"absurd tempo {float(bpm):.4g} bpm (allowed {MIN_BPM:g}-{MAX_BPM:g})")
    pitched = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not pitched and not allow_empty:
        drums = any(inst.notes for inst in pm.instruments if inst.is_drum)
        raise DecodeError(path, "only drum tracks, no pitched notes" if drums else "no notes")
    end = max((n.end for n in pitched), default=0.0)
    if end > MAX_SECONDS:
        raise DecodeError(path, f"absurd length {end:.0f} s (> {MAX_SECONDS:.0f} s)")
    return pm


def write_midi(pm, path: str | Path) -> Path:
    """Write a ``PrettyMIDI`` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pm.write(str(path))
    return path


def list_midi(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of ``.mid``/``.midi`` files.
    A named file is kept whatever its suffix (so that bad inputs get their one-line error)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in MIDI_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return out


__all__ = ["read_midi", "write_midi", "list_midi", "MIDI_SUFFIXES", "MIN_BPM", "MAX_BPM", "MAX_SECONDS"]
