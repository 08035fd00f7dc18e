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
    data = _check_bytes(path)
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


def _check_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise DecodeError(path, "no such file")
    data = path.read_bytes()
    if data[:4] != b"MThd":
        raise DecodeError(path, "not a MIDI file (no MThd header)")
    return data


class MidiScore:
    """A MIDI file parsed by symusic (C++), reduced to what tokenising needs, as numpy arrays in ticks.

    Attributes: ``resolution`` (ticks per quarter), ``tempo_ticks``/``tempo_mspq`` (the tempo map, as
    pretty_midi keeps it: changes only, 120 bpm until the first), ``tracks``: list of
    ``(program, is_drum, {"time", "duration", "pitch", "velocity"})``.
    """

    def __init__(self, resolution: int, tempo_ticks, tempo_mspq, tracks):
        self.resolution, self.tempo_ticks, self.tempo_mspq, self.tracks = resolution, tempo_ticks, tempo_mspq, tracks

    def overlapping(self) -> bool:
        """True when some track holds overlapping notes of one pitch.  There symusic (first in, first
        out) and pretty_midi (a note-off ends every earlier open note of its pitch) pair note-offs
        differently, and symusic may drop a note, so such files are read with pretty_midi."""
        import numpy as np

        for _, _, a in self.tracks:
            order = np.lexsort((a["time"], a["pitch"]))
            p, on = a["pitch"][order], a["time"][order].astype(np.int64)
            off = on + a["duration"][order].astype(np.int64)
            same = p[1:] == p[:-1]
            if bool((same & (on[1:] < off[:-1])).any()):
                return True
        return False

    def tick_to_seconds(self, ticks):
        """Seconds of tick positions through the tempo map (float64, pretty_midi's arithmetic)."""
        import numpy as np

        ticks = np.asarray(ticks, dtype=np.int64)
        scales = [60.0 / ((6e7 / m) * self.resolution) for m in self.tempo_mspq]
        starts = [0.0]
        for (t0, sc), t1 in zip(zip(self.tempo_ticks, scales), self.tempo_ticks[1:]):
            starts.append(starts[-1] + sc * (t1 - t0))
        idx = np.searchsorted(np.asarray(self.tempo_ticks), ticks, side="right") - 1
        return np.asarray(starts)[idx] + np.asarray(scales)[idx] * (ticks - np.asarray(self.tempo_ticks)[idx])


def read_score(path: str | Path, allow_empty: bool = False) -> MidiScore:
    """Parse ``path`` with symusic's C++ reader (about 10× pretty_midi's speed) and check it as
    :func:`read_midi` does.  Raises :class:`DecodeError` for the same files."""
    import symusic

    path = Path(path)
    data = _check_bytes(path)
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # noqa: BLE001 - the C++ reader raises several types; we promise one
        raise DecodeError(path, f"corrupt MIDI ({type(e).__name__}: {e})") from None
    # the tempo map as pretty_midi builds it: 120 bpm at tick 0, then every change of value
    ticks, mspq = [0], [500000.0]
    for t in sorted(score.tempos, key=lambda t: t.time):
        m = float(t.mspq)
        bpm = 6e7 / m if m > 0 else float("inf")
        if not (MIN_BPM <= bpm <= MAX_BPM):
            raise DecodeError(path, f"absurd tempo {bpm:.4g} bpm (allowed {MIN_BPM:g}-{MAX_BPM:g})")
        if t.time == 0 and ticks == [0] and len(mspq) == 1:
            mspq[0] = m
        elif m != mspq[-1]:
            ticks.append(int(t.time))
            mspq.append(m)
    tracks = [(int(tr.program), bool(tr.is_drum), tr.notes.numpy()) for tr in score.tracks if len(tr.notes)]
    out = MidiScore(int(score.ticks_per_quarter), ticks, mspq, tracks)
    pitched = [a for _, drum, a in tracks if not drum and len(a["time"])]
    if not pitched and not allow_empty:
        raise DecodeError(path, "only drum tracks, no pitched notes" if tracks else "no notes")
    if pitched:
        end_tick = max(int((a["time"] + a["duration"]).max()) for a in pitched)
        end = float(out.tick_to_seconds([end_tick])[0])
        if end > MAX_SECONDS:
            raise DecodeError(path, f"absurd length {end:.0f} s (> {MAX_SECONDS:.0f} s)")
    return out


def load_notes(path: str | Path, cfg, allow_empty: bool = False, reader: str = "auto"):
    """Quantised, clean notes (:func:`encoders.midi.midi_to_notes`) of a MIDI file.

    Args:
        cfg: :class:`encoders.midi.MidiVocabConfig`.
        reader: "symusic" (C++), "pretty_midi" (pure Python) or "auto" (symusic when installed).
    """
    from ..midi import midi_to_notes

    if reader == "auto":
        try:
            import symusic  # noqa: F401
            reader = "symusic"
        except ImportError:
            reader = "pretty_midi"
    src = read_score(path, allow_empty) if reader == "symusic" else None
    if src is None or src.overlapping():
        src = read_midi(path, allow_empty)
    return midi_to_notes(src, cfg)


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


__all__ = ["read_midi", "read_score", "load_notes", "MidiScore", "write_midi", "list_midi", "MIDI_SUFFIXES", "MIN_BPM", "MAX_BPM", "MAX_SECONDS"]
