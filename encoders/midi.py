"""MIDI front end: an event vocabulary built from its config alone, MIDI ↔ tokens, piano rolls,
transposition and key estimation.  Pure functions on ``pretty_midi`` objects and integer note lists;
file reading lives in :mod:`encoders.io.midi`.

The event vocabulary follows Magenta's Performance RNN: ``NOTE_ON`` and ``NOTE_OFF`` per pitch,
``TIME_SHIFT`` of 1..max steps, ``VELOCITY`` bins, optional ``PROGRAM`` tokens, plus ``PAD``/``BOS``/``EOS``.
Time is counted in steps of ``step_ms`` milliseconds (``time_unit="seconds"``) or of
1/``steps_per_quarter`` quarter note (``time_unit="beats"``, for quantised music such as chorales).

Clean-up applied before encoding (documented, deterministic):

* drum tracks are dropped; notes outside ``[pitch_min, pitch_max]`` are dropped;
* times are rounded to the nearest step; a note shorter than one step lasts one step;
* notes of the same pitch (and program) that overlap are merged: a new onset ends the sounding note,
  and the new note lasts until the later of the two ends; identical onsets become one note.
  So every distinct (program, pitch, onset) survives, and decode(encode(x)) == clean(quantise(x)).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
from .config import DictConfig

TIME_UNITS = ("seconds", "beats")


@dataclass(frozen=True)
class MidiVocabConfig(DictConfig):
    """Everything that defines the vocabulary and the time grid (stored in checkpoints).

    Args:
        time_unit: "seconds" (steps of ``step_ms``) or "beats" (steps of 1/``steps_per_quarter`` quarter).
        step_ms: step length in ms when ``time_unit="seconds"`` (Performance RNN: 10).
        steps_per_quarter: grid when ``time_unit="beats"`` (4: sixteenth notes).
        max_shift_steps: largest single TIME_SHIFT; longer gaps use several (Performance RNN: 100 = 1 s).
        velocity_bins: VELOCITY tokens; 1 = no velocity tokens (every note gets ``default_velocity``).
        pitch_min, pitch_max: pitch range of NOTE_ON/NOTE_OFF (inclusive; notes outside are dropped).
        programs: add PROGRAM tokens 0..127 (one instrument per program on decoding).
        default_velocity: velocity written when ``velocity_bins == 1``.
        tempo: bpm used to place beats in time when writing MIDI (beats mode).
    """

    time_unit: str = "seconds"
    step_ms: float = 10.0
    steps_per_quarter: int = 4
    max_shift_steps: int = 100
    velocity_bins: int = 32
    pitch_min: int = 0
    pitch_max: int = 127
    programs: bool = False
    default_velocity: int = 80
    tempo: float = 120.0

    def __post_init__(self):
        if self.time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be one of {TIME_UNITS}, got {self.time_unit!r}")
        if not (0 <= self.pitch_min <= self.pitch_max <= 127):
            raise ValueError(f"need 0 <= pitch_min <= pitch_max <= 127, got {self.pitch_min}, {self.pitch_max}")
        if self.max_shift_steps < 1 or self.velocity_bins < 1 or self.velocity_bins > 127:
            raise ValueError("max_shift_steps >= 1 and 1 <= velocity_bins <= 127 required")
        if self.steps_per_quarter < 1 or self.step_ms <= 0 or self.tempo <= 0:
            raise ValueError("steps_per_quarter, step_ms and tempo must be positive")


    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "MidiVocabConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @property
    def seconds_per_step(self) -> float:
        if self.time_unit == "seconds":
            return self.step_ms / 1000.0
        return 60.0 / self.tempo / self.steps_per_quarter


# Named configurations (as Magenta's named configs); never mutate them, use dataclasses.replace.
PERFORMANCE = MidiVocabConfig()
CHORALE = MidiVocabConfig(time_unit="beats", steps_per_quarter=4, max_shift_steps=16, velocity_bins=1,
                          pitch_min=21, pitch_max=108)
PRESETS = {"performance": PERFORMANCE, "chorale": CHORALE}


class Note(NamedTuple):
    """A quantised note: times in steps of the config's grid; ``end > start``."""

    start: int
    end: int
    pitch: int
    velocity: int
    program: int = 0


class MidiVocab:
    """Event ↔ id tables computed from a :class:`MidiVocabConfig` alone (nothing else is stored).

    Layout: PAD=0, BOS=1, EOS=2, NOTE_ON×P, NOTE_OFF×P, TIME_SHIFT×max_shift, VELOCITY×bins (if > 1),
    PROGRAM×128 (if programs).
    """

    def __init__(self, config: MidiVocabConfig):
        self.config = c = config
        self.n_pitch = c.pitch_max - c.pitch_min + 1
        self.PAD, self.BOS, self.EOS = 0, 1, 2
        self.note_on0 = 3
        self.note_off0 = self.note_on0 + self.n_pitch
        self.shift0 = self.note_off0 + self.n_pitch  # id of TIME_SHIFT 1
        self.vel0 = self.shift0 + c.max_shift_steps
        self.n_vel = c.velocity_bins if c.velocity_bins > 1 else 0
        self.prog0 = self.vel0 + self.n_vel
        self.n_prog = 128 if c.programs else 0
        self.size = self.prog0 + self.n_prog
        names = ["PAD", "BOS", "EOS"]
        names += [f"NOTE_ON_{p}" for p in range(c.pitch_min, c.pitch_max + 1)]
        names += [f"NOTE_OFF_{p}" for p in range(c.pitch_min, c.pitch_max + 1)]
        names += [f"TIME_SHIFT_{s}" for s in range(1, c.max_shift_steps + 1)]
        names += [f"VELOCITY_{b}" for b in range(self.n_vel)]
        names += [f"PROGRAM_{p}" for p in range(self.n_prog)]
        self.tokens: list[str] = names
        self.index = {t: i for i, t in enumerate(names)}
        assert len(names) == self.size

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other) -> bool:
        return isinstance(other, MidiVocab) and self.config == other.config and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"MidiVocab(size={self.size}, {self.config})"

    # --- ids ---------------------------------------------------------------------------
    def note_on(self, pitch: int) -> int:
        return self.note_on0 + pitch - self.config.pitch_min

    def note_off(self, pitch: int) -> int:
        return self.note_off0 + pitch - self.config.pitch_min

    def shift(self, steps: int) -> int:
        return self.shift0 + steps - 1

    def velocity(self, vel: int) -> int:
        return self.vel0 + velocity_bin(vel, self.config.velocity_bins)

    def program(self, prog: int) -> int:
        return self.prog0 + prog

    def kind(self, i: int) -> tuple[str, int]:
        """``(event, value)`` of id ``i``: ("NOTE_ON", pitch), ("TIME_SHIFT", steps), ("PAD", 0)..."""
        if i < self.note_on0:
            return ("PAD", "BOS", "EOS")[i], 0
        if i < self.note_off0:
            return "NOTE_ON", i - self.note_on0 + self.config.pitch_min
        if i < self.shift0:
            return "NOTE_OFF", i - self.note_off0 + self.config.pitch_min
        if i < self.vel0:
            return "TIME_SHIFT", i - self.shift0 + 1
        if i < self.prog0:
            return "VELOCITY", i - self.vel0
        if i < self.size:
            return "PROGRAM", i - self.prog0
        raise ValueError(f"token id {i} outside the vocabulary (size {self.size})")

    def decode_names(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def pitch_shift_table(self, k: int) -> np.ndarray | None:
        """Lookup table mapping every id to its id transposed by ``k`` semitones (NOTE_ON/OFF only);
        pitches that would leave the range map to -1."""
        t = np.arange(self.size, dtype=np.int64)
        for base in (self.note_on0, self.note_off0):
            src = np.arange(self.n_pitch)
            dst = src + k
            ok = (dst >= 0) & (dst < self.n_pitch)
            t[base + src] = np.where(ok, base + dst, -1)
        return t


def velocity_bin(vel: int, bins: int) -> int:
    """Bin of velocity 1..127 among ``bins`` equal bins (0-based)."""
    return min(max(int(vel) - 1, 0) * bins // 127, bins - 1)


def bin_velocity(b: int, bins: int) -> int:
    """Velocity at the centre of bin ``b``."""
    lo = -(-b * 127 // bins) + 1  # smallest velocity in the bin
    hi = -(-(b + 1) * 127 // bins)
    return int(round((lo + hi) / 2))


# --- MIDI → notes ------------------------------------------------------------------------
def time_to_step(pm, t: float, cfg: MidiVocabConfig) -> int:
    if cfg.time_unit == "seconds":
        return int(round(t * 1000.0 / cfg.step_ms))
    # beats: through the file's own tempo map, so tempo changes do not move the grid
    return int(round(pm.time_to_tick(t) / pm.resolution * cfg.steps_per_quarter))


def _quantize_score(score, cfg: MidiVocabConfig) -> list[Note]:
    """:func:`quantize` for an :class:`encoders.io.midi.MidiScore` (ticks as numpy arrays)."""
    out = []
    for program, is_drum, a in score.tracks:
        if is_drum:
            continue
        prog = program if cfg.programs else 0
        keep = (a["pitch"] >= cfg.pitch_min) & (a["pitch"] <= cfg.pitch_max)
        on = a["time"][keep].astype(np.int64)
        off = on + a["duration"][keep].astype(np.int64)
        if cfg.time_unit == "seconds":
            s = np.round(score.tick_to_seconds(on) * 1000.0 / cfg.step_ms)
            e = np.round(score.tick_to_seconds(off) * 1000.0 / cfg.step_ms)
        else:
            s = np.round(on / score.resolution * cfg.steps_per_quarter)
            e = np.round(off / score.resolution * cfg.steps_per_quarter)
        vel = np.clip(a["velocity"][keep], 1, 127)
        out += [Note(int(si), max(int(ei), int(si) + 1), int(p), int(v), prog)
                for si, ei, p, v in zip(s, e, a["pitch"][keep], vel)]
    out.sort(key=lambda n: (n.start, n.program, n.pitch))
    return out


def quantize(pm, cfg: MidiVocabConfig) -> list[Note]:
    """Pitched notes of ``pm`` (a ``PrettyMIDI`` or an :class:`encoders.io.midi.MidiScore`) on the
    config's grid (drums and out-of-range pitches dropped).

    Returns notes sorted by (start, program, pitch); not yet overlap-cleaned (see :func:`clean_notes`).
    """
    if hasattr(pm, "tracks") and hasattr(pm, "tick_to_seconds"):
        return _quantize_score(pm, cfg)
    out = []
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        prog = int(inst.program) if cfg.programs else 0
        for n in inst.notes:
            if not (cfg.pitch_min <= n.pitch <= cfg.pitch_max):
                continue
            s, e = time_to_step(pm, n.start, cfg), time_to_step(pm, n.end, cfg)
            out.append(Note(s, max(e, s + 1), int(n.pitch), int(min(max(n.velocity, 1), 127)), prog))
    out.sort(key=lambda n: (n.start, n.program, n.pitch))
    return out


def clean_notes(notes: Sequence[Note]) -> list[Note]:
    """Merge overlapping notes of the same (program, pitch): a later onset ends the sounding note there
    and takes over its end if that was later; notes with the same onset become one (loudest, longest).
    Every distinct (program, pitch, onset) survives."""
    by_key: dict[tuple[int, int], list[Note]] = {}
    for n in notes:
        by_key.setdefault((n.program, n.pitch), []).append(n)
    out = []
    for group in by_key.values():
        group.sort(key=lambda n: (n.start, -n.end))
        cur = None
        for n in group:
            if cur is None:
                cur = n
            elif n.start == cur.start:
                cur = cur._replace(end=max(cur.end, n.end), velocity=max(cur.velocity, n.velocity))
            elif n.start < cur.end:
                out.append(cur._replace(end=n.start))
                cur = n._replace(end=max(n.end, cur.end))
            else:
                out.append(cur)
                cur = n
        if cur is not None:
            out.append(cur)
    out.sort(key=lambda n: (n.start, n.program, n.pitch))
    return out


# --- notes ↔ tokens -----------------------------------------------------------------------
def encode_notes(notes: Sequence[Note], vocab: MidiVocab, bos_eos: bool = False) -> list[int]:
    """Event tokens of clean notes (see :func:`clean_notes`).

    At each time: NOTE_OFFs, then for each onset (by program, pitch) PROGRAM/VELOCITY when they change
    and NOTE_ON; TIME_SHIFTs (at most ``max_shift_steps`` each) move to the next time.
    """
    c = vocab.config
    events = []  # (time, order, program, pitch, velocity)
    for n in notes:
        if not (c.pitch_min <= n.pitch <= c.pitch_max):
            raise ValueError(f"pitch {n.pitch} outside the vocabulary's range [{c.pitch_min}, {c.pitch_max}]")
        events.append((n.end, 0, n.program, n.pitch, 0))
        events.append((n.start, 1, n.program, n.pitch, n.velocity))
    events.sort()
    ids = [vocab.BOS] if bos_eos else []
    t, prog, vbin = 0, None, None
    for time, order, p, pitch, vel in events:
        gap = time - t
        while gap > 0:
            s = min(gap, c.max_shift_steps)
            ids.append(vocab.shift(s))
            gap -= s
        t = time
        if c.programs and p != prog:
            ids.append(vocab.program(p))
            prog = p
        if order == 0:
            ids.append(vocab.note_off(pitch))
        else:
            if vocab.n_vel:
                b = velocity_bin(vel, c.velocity_bins)
                if b != vbin:
                    ids.append(vocab.vel0 + b)
                    vbin = b
            ids.append(vocab.note_on(pitch))
    if bos_eos:
        ids.append(vocab.EOS)
    return ids


def decode_tokens(ids: Sequence[int], vocab: MidiVocab, return_end: bool = False, max_note_steps: int | None = None):
    """Notes of a token sequence; tolerant of any sequence a sampler can produce.

    PAD/BOS are ignored and EOS stops; a NOTE_OFF with no sounding note is ignored; a NOTE_ON of a
    sounding pitch ends the earlier note there (or is ignored at the same instant); notes still
    sounding at the end are closed at the final time (one step after their onset at least), so no
    note is ever left stuck.  ``max_note_steps``: a note sounding longer is ended after that many steps
    (as Magenta's ``max_note_duration``: a sampler that forgot a NOTE_OFF does not hold a note for the
    rest of the piece).  Returns notes sorted by (start, program, pitch) (and the end time in steps with
    ``return_end``).
    """
    c = vocab.config
    t, prog = 0, 0
    vel = c.default_velocity
    sounding: dict[tuple[int, int], tuple[int, int]] = {}  # (program, pitch) -> (start, velocity)
    notes = []
    for i in ids:
        kind, v = vocab.kind(int(i))
        if kind == "EOS":
            break
        if kind == "TIME_SHIFT":
            t += v
        elif kind == "VELOCITY":
            vel = bin_velocity(v, c.velocity_bins)
        elif kind == "PROGRAM":
            prog = v
        elif kind == "NOTE_ON":
            key = (prog, v)
            if key in sounding:
                s, vv = sounding[key]
                if s == t:
                    continue
                notes.append(Note(s, t, v, vv, prog))
            sounding[key] = (t, vel)
        elif kind == "NOTE_OFF":
            key = (prog, v)
            if key in sounding:
                s, vv = sounding.pop(key)
                if t > s:
                    notes.append(Note(s, t, v, vv, prog))
                else:  # an off at the onset instant: keep the note one step (it was struck)
                    notes.append(Note(s, s + 1, v, vv, prog))
    end = max([t] + [n.end for n in notes])
    for (p, pitch), (s, vv) in sounding.items():
        notes.append(Note(s, max(end, s + 1), pitch, vv, p))
    if max_note_steps is not None:
        notes = [n._replace(end=min(n.end, n.start + max_note_steps)) for n in notes]
    notes.sort(key=lambda n: (n.start, n.program, n.pitch))
    if return_end:
        return notes, max([end] + [n.end for n in notes])
    return notes


def notes_to_midi(notes: Sequence[Note], cfg: MidiVocabConfig):
    """A ``PrettyMIDI`` with one instrument per program (beats: at ``cfg.tempo``)."""
    import pretty_midi

    res = 480
    pm = pretty_midi.PrettyMIDI(resolution=res, initial_tempo=cfg.tempo)
    insts: dict[int, "pretty_midi.Instrument"] = {}
    sps = cfg.seconds_per_step
    for n in notes:
        inst = insts.get(n.program)
        if inst is None:
            inst = insts[n.program] = pretty_midi.Instrument(program=n.program)
        inst.notes.append(pretty_midi.Note(velocity=int(n.velocity),
                                           pitch=int(n.pitch), start=n.start * sps, end=n.end * sps))
    pm.instruments = [insts[p] for p in sorted(insts)]
    return pm


def midi_to_notes(pm, cfg: MidiVocabConfig) -> list[Note]:
    """Quantised, clean notes of a ``PrettyMIDI`` (velocity binned as the tokens would carry it)."""
    notes = clean_notes(quantize(pm, cfg))
    if cfg.velocity_bins > 1:
        return [n._replace(velocity=bin_velocity(velocity_bin(n.velocity, cfg.velocity_bins), cfg.velocity_bins))
                for n in notes]
    return [n._replace(velocity=cfg.default_velocity) for n in notes]


def midi_to_tokens(pm, vocab: MidiVocab, bos_eos: bool = False) -> list[int]:
    """``PrettyMIDI`` → token ids (quantise, clean, encode)."""
    return encode_notes(clean_notes(quantize(pm, vocab.config)), vocab, bos_eos)


def tokens_to_midi(ids: Sequence[int], vocab: MidiVocab):
    """Token ids → ``PrettyMIDI`` (tolerant decoding, see :func:`decode_tokens`)."""
    return notes_to_midi(decode_tokens(ids, vocab), vocab.config)


# --- transposition ------------------------------------------------------------------------
def transpose_notes(notes: Sequence[Note], k: int, lo: int = 21, hi: int = 108) -> list[Note]:
    """Shift every pitch by ``k`` semitones; raises if a pitch would leave [lo, hi] (piano: 21..108)."""
    out = [n._replace(pitch=n.pitch + k) for n in notes]
    if out and not (lo <= min(n.pitch for n in out) and max(n.pitch for n in out) <= hi):
        raise ValueError(f"transposing by {k} leaves the range [{lo}, {hi}]")
    return out


def transpose_tokens(ids: np.ndarray, vocab: MidiVocab, k: int) -> np.ndarray | None:
    """Token ids transposed by ``k`` semitones, or None if a note would leave the vocabulary's range."""
    if k == 0:
        return np.asarray(ids)
    out = vocab.pitch_shift_table(k)[np.asarray(ids, dtype=np.int64)]
    return None if (out < 0).any() else out


def transpose_range(ids: np.ndarray, vocab: MidiVocab, lo: int = 21, hi: int = 108) -> tuple[int, int]:
    """Smallest and largest shifts keeping every note of ``ids`` inside [lo, hi] ∩ the vocabulary."""
    ids = np.asarray(ids)
    note = ((ids >= vocab.note_on0) & (ids < vocab.shift0))
    if not note.any():
        return 0, 0
    pitches = (ids[note] - vocab.note_on0) % vocab.n_pitch + vocab.config.pitch_min
    lo, hi = max(lo, vocab.config.pitch_min), min(hi, vocab.config.pitch_max)
    return lo - int(pitches.min()), hi - int(pitches.max())


# --- piano rolls and keys -----------------------------------------------------------------
def pianoroll(notes: Sequence[Note], frame_steps: int, lo: int = 21, hi: int = 108) -> np.ndarray:
    """Multi-hot frames (T, hi-lo+1): frame t holds the pitches sounding at step ``t * frame_steps``
    (sampling, as the Boulanger-Lewandowski et al. 2012 data sets).  T covers the last note's end."""
    end = max((n.end for n in notes), default=0)
    T = -(-end // frame_steps)
    roll = np.zeros((T, hi - lo + 1), dtype=np.float32)
    for n in notes:
        if lo <= n.pitch <= hi:
            f0 = -(-n.start // frame_steps)  # first frame whose time is >= start
            f1 = -(-n.end // frame_steps)  # frames with time < end
            roll[f0:f1, n.pitch - lo] = 1.0
    return roll


# Aarden–Essen key profiles (major, minor), tonic first: music21's default for ``analyze("key")``;
# on chorales they pick the right key where Krumhansl–Kessler's often pick the dominant or relative.
_AE_MAJOR = np.array([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494,
                      0.232998, 4.95122])
_AE_MINOR = np.array([18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186,
                      7.37619, 1.75623])


def estimate_key(notes: Sequence[Note]) -> tuple[int, str]:
    """Krumhansl–Schmuckler key finding (Aarden–Essen profiles) on the duration-weighted pitch-class histogram.

    Returns ``(tonic pitch class 0..11, "major"|"minor")``.
    """
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.end - n.start
    return key_from_histogram(hist)


def key_from_histogram(hist: Sequence[float]) -> tuple[int, str]:
    """Best-correlated key of a (duration-weighted) pitch-class histogram (12,), C first."""
    hist = np.asarray(hist, dtype=np.float64)
    best, key = -np.inf, (0, "major")
    if hist.sum() == 0:
        return key
    for tonic in range(12):
        for mode, prof in (("major", _AE_MAJOR), ("minor", _AE_MINOR)):
            r = np.corrcoef(hist, np.roll(prof, tonic))[0, 1]
            if r > best:
                best, key = r, (tonic, mode)
    return key


def shift_to_c(tonic: int) -> int:
    """Semitone shift in [-6, 5] that moves ``tonic`` to C (the smaller move)."""
    k = (-tonic) % 12
    return k - 12 if k > 5 else k


__all__ = [
    "MidiVocabConfig", "MidiVocab", "Note", "PERFORMANCE", "CHORALE", "PRESETS", "TIME_UNITS", "velocity_bin",
    "bin_velocity", "quantize", "clean_notes", "encode_notes", "decode_tokens", "notes_to_midi", "midi_to_notes",
    "midi_to_tokens", "tokens_to_midi", "transpose_notes", "transpose_tokens", "transpose_range", "pianoroll",
    "estimate_key", "key_from_histogram", "shift_to_c",
]
