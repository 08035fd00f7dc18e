"""Descriptive statistics of MIDI files, to compare generated pieces with a corpus.

Per file: pitch-class histogram (note counts, normalised; also rotated to the estimated tonic C), note density (onsets per second), polyphony
(mean number of sounding notes over the time when at least one sounds), pitch range (min, max, span)
and mean pitch.  A set of files: the histogram of all notes, the other figures averaged over files.
Distances: L1 between histograms (0..2), absolute differences of the others, relative for density.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from encoders.io import DecodeError, SkipCounter
from encoders.io.midi import list_midi, read_midi
from encoders.midi import key_from_histogram

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
SCALARS = ("note_density", "polyphony", "pitch_min", "pitch_max", "pitch_range", "pitch_mean", "duration")


def midi_stats(pm) -> dict:
    """Statistics of one ``PrettyMIDI`` (pitched notes only)."""
    notes = [n for inst in pm.instruments if not inst.is_drum for n in inst.notes]
    if not notes:
        raise ValueError("no pitched notes")
    pitches = np.array([n.pitch for n in notes])
    starts = np.array([n.start for n in notes])
    ends = np.array([n.end for n in notes])
    hist = np.bincount(pitches % 12, minlength=12).astype(float)
    # key-invariant view: the histogram rotated so that the estimated tonic is C (a model trained with
    # transposition spreads over keys, so the raw histogram mostly measures the corpus' choice of keys)
    tonic, mode = key_from_histogram(np.bincount(pitches % 12, weights=ends - starts, minlength=12))
    hist_c = np.roll(hist, -tonic)
    duration = float(ends.max() - min(starts.min(), 0.0))
    # polyphony: sweep over note boundaries, time-weighted count of sounding notes while any sounds
    times = np.concatenate([starts, ends])
    delta = np.concatenate([np.ones(len(notes)), -np.ones(len(notes))])
    order = np.lexsort((delta, times))  # ends before starts at the same instant
    times, delta = times[order], delta[order]
    counts = np.cumsum(delta)[:-1]
    spans = np.diff(times)
    sounding = (counts > 0) & (spans > 0)
    poly = float((counts[sounding] * spans[sounding]).sum() / spans[sounding].sum()) if sounding.any() else 1.0
    return {"n_notes": len(notes), "duration": duration, "pitch_class_hist": (hist / hist.sum()).tolist(),
            "pitch_class_counts": hist.tolist(), "pitch_class_counts_c": hist_c.tolist(), "key": [tonic, mode],
            "note_density": len(notes) / max(duration, 1e-9),
            "polyphony": poly, "pitch_min": int(pitches.min()), "pitch_max": int(pitches.max()),
            "pitch_range": int(pitches.max() - pitches.min()), "pitch_mean": float(pitches.mean())}


def aggregate(per_file: Sequence[dict]) -> dict:
    """Corpus-level figures: pooled pitch-class histogram, other figures averaged over files."""
    if not per_file:
        return {"n_files": 0}
    counts = np.sum([s["pitch_class_counts"] for s in per_file], axis=0)
    counts_c = np.sum([s["pitch_class_counts_c"] for s in per_file], axis=0)
    out = {"n_files": len(per_file), "n_notes": int(sum(s["n_notes"] for s in per_file)),
           "pitch_class_hist": (counts / counts.sum()).tolist(),
           "pitch_class_hist_in_c": (counts_c / counts_c.sum()).tolist(),
           "minor_fraction": float(np.mean([s["key"][1] == "minor" for s in per_file]))}
    for k in SCALARS:
        out[k] = float(np.mean([s[k] for s in per_file]))
    return out


def distance(a: dict, b: dict) -> dict:
    """How far statistics ``b`` are from ``a`` (e.g. generated vs corpus)."""
    ha, hb = np.array(a["pitch_class_hist"]), np.array(b["pitch_class_hist"])
    ca, cb = np.array(a["pitch_class_hist_in_c"]), np.array(b["pitch_class_hist_in_c"])
    return {"pitch_class_l1": float(np.abs(ha - hb).sum()), "pitch_class_in_c_l1": float(np.abs(ca - cb).sum()),
            "note_density_rel": float(abs(b["note_density"] - a["note_density"]) / max(a["note_density"], 1e-9)),
            "polyphony_abs": float(abs(b["polyphony"] - a["polyphony"])),
            "pitch_range_abs": float(abs(b["pitch_range"] - a["pitch_range"])),
            "pitch_mean_abs": float(abs(b["pitch_mean"] - a["pitch_mean"]))}


def stats_of_paths(paths: Sequence[str | Path], skips: SkipCounter | None = None, progress: bool = True) -> dict:
    """Aggregate statistics of the files/folders ``paths``; bad files are skipped and counted."""
    skips = skips if skips is not None else SkipCounter()
    per = []
    for f in tqdm(list_midi(paths), desc="stats", disable=not progress, file=sys.stderr, leave=False):
        try:
            per.append(midi_stats(read_midi(f)))
        except DecodeError as e:
            skips.add(e)
            print(str(e), file=sys.stderr)
    out = aggregate(per)
    out["skipped"] = len(skips)
    return out


def format_stats(name: str, s: dict) -> str:
    if not s.get("n_files"):
        return f"{name}: no readable files (skipped {s.get('skipped', 0)})"
    top = sorted(zip(PITCH_CLASSES, s["pitch_class_hist"]), key=lambda x: -x[1])[:5]
    return (f"{name}: {s['n_files']} files, {s['n_notes']} notes, skipped {s.get('skipped', 0)}\n"
            f"  pitch classes (top 5): {', '.join(f'{p} {v:.3f}' for p, v in top)}\n"
            f"  in C (tonic → C): {', '.join(f'{p} {v:.3f}' for p, v in zip(PITCH_CLASSES, s['pitch_class_hist_in_c']))}\n"
            f"  note density {s['note_density']:.2f} notes/s, polyphony {s['polyphony']:.2f}, pitch range "
            f"{s['pitch_min']:.0f}-{s['pitch_max']:.0f} (span {s['pitch_range']:.1f}), mean pitch {s['pitch_mean']:.1f}")


__all__ = ["midi_stats", "aggregate", "distance", "stats_of_paths", "format_stats", "PITCH_CLASSES"]
