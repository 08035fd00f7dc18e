"""Using a trained music bundle (a file or a shipped model): evaluation on a corpus split and generation of
MIDI files."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from pathlib import Path
from typing import Sequence

import pretty_midi
import torch

from encoders.io import DecodeError, SkipCounter, atomic_write
from encoders.io.midi import MAX_BPM, MIN_BPM
from encoders.io.midi import load_notes as read_notes
from encoders.midi import MidiVocab, MidiVocabConfig, encode_notes, notes_to_midi

from .. import bundle as _bundle
from ..cli_common import UserError, check_output
from .corpus import corpus_files
from .data import PianoRollConfig, load_rolls, load_token_pieces, notes_to_roll
from .evaluate import roll_nll, summary, token_nll, unigram_nll_from_counts
from .generate import plot_pianoroll, roll_to_notes, sample_rolls, sample_tokens, tokens_to_pretty_midi
from .render import render_file

SHIPPED = "music"  # the shipped model used when no checkpoint is given
MAX_SECONDS = 600.0  # longest piece ``generate`` writes (a bound, so that no request runs without end)
MAX_TOKENS = 100_000  # most event tokens (piano roll: frames) per piece
# 0.8, not 1.0: 16 pieces of 30 s from the shipped model, compared with the 41 test chorales (``music
# stats``), have 4.23 voices sounding on average at 0.8 against 4.82 at 1.0 (Bach: 4.05), a pitch span
# of 38.8 against 40.9 (35.9) and pitch classes as close or closer (L1 0.202 vs 0.216); 1.0 adds stray notes.
DEFAULT_TEMPERATURE = 0.8


def load_music(checkpoint: str | Path | None, device: str = "cpu", command: str = "lstm-media music generate"):
    """``(model, bundle)`` of a music bundle: a path, a shipped model name, or None for the shipped ``music``."""
    return _bundle.load(checkpoint, "music", device=device, default=SHIPPED, command=command)


def evaluate_bundle(model, b: dict, files, progress: bool = True, device: str = "cpu",
                    where: str = "the given files") -> dict:
    """NLL of MIDI ``files`` under a loaded music model: ``nll_per_token`` (or ``nll_per_frame``),
    ``perplexity``, ``n_files``, ``n_tokens`` (``n_frames``), ``skipped``; for event models also the
    unigram baseline (counts of the bundle's training data, add-one) on the same tokens.
    Raises UserError when no file is usable (no figure is ever reported on nothing)."""
    files = list(files)
    skips = SkipCounter()
    ex = b["extras"]
    if ex["data_kind"] == "tokens":
        vocab = MidiVocab(MidiVocabConfig.from_dict(b["front_end"]))
        pieces, _ = load_token_pieces(files, vocab, skips, progress)
        if not pieces:
            raise UserError(_nothing(where, len(files), len(skips)))
        out = summary(*token_nll(model, pieces, device=device), "token")
        base = unigram_nll_from_counts(ex["unigram_counts"], pieces)
        out["unigram_nll_per_token"] = base[0] / max(base[1], 1)
        n = len(pieces)
    else:
        prcfg = PianoRollConfig.from_dict(ex["pianoroll"])
        rolls, _ = load_rolls(files, prcfg, skips, progress)
        rolls = [r for r in rolls if len(r)]
        if not rolls:
            raise UserError(_nothing(where, len(files), len(skips)))
        out = summary(*roll_nll(model, rolls, device=device), "frame")
        n = len(rolls)
    out["n_files"] = n
    out["skipped"] = len(skips)
    if len(skips):
        print(skips.summary("files"), file=sys.stderr)
    return out


def _nothing(where: str, n_files: int, n_skipped: int) -> str:
    if not n_files:
        return f"{where}: no MIDI files to evaluate"
    return f"{where}: none of the {n_files} MIDI files is usable ({n_skipped} skipped); nothing to evaluate"


def evaluate_checkpoint(checkpoint: str | Path | None, data_dir: str | Path, split: str = "test",
                        progress: bool = True, device: str = "cpu") -> dict:
    """NLL of ``split`` of corpus folder ``data_dir`` under a music bundle (see :func:`evaluate_bundle`)."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such corpus folder")
    model, b = load_music(checkpoint, device, "lstm-media music eval")
    out = {"checkpoint": b["path"], "model": b["model"], "split": split}
    out.update(evaluate_bundle(model, b, corpus_files(data_dir, split), progress, device,
                               where=f"{data_dir} [{split} split]"))
    return out


# --- generation ------------------------------------------------------------------------------------
def output_paths(out: str | Path, num: int, overwrite: bool = False, inputs=(), audio: str | None = None) -> list[Path]:
    """Where ``num`` pieces go, checked (never over an input; never over an existing file without
    ``overwrite``).  ``out``: a file name (``song.mid``; with ``num`` > 1 ``song_000.mid`` ...), or a folder
    (existing, or named with a trailing ``/``): numbered files ``music_NNN.mid`` inside it, numbered after
    those already there.  Each piece also gets a ``.png`` beside it (and with ``audio`` "wav" or "flac",
    that audio file)."""
    text = str(out)
    out = Path(out)
    for i in inputs:
        if i is not None and (out.resolve() == Path(i).resolve()):
            raise UserError(f"--out {out} is one of the command's inputs; refusing to write over it")
    if out.is_dir() or text.endswith(("/", os.sep)):
        taken = [int(m.group(1)) for f in (out.iterdir() if out.is_dir() else ())
                 if (m := re.fullmatch(r"music_(\d+)\.(mid|png|wav|flac)", f.name))]
        first = max(taken, default=-1) + 1
        paths = [out / f"music_{first + i:03d}.mid" for i in range(num)]
    elif num == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{i:03d}{out.suffix or '.mid'}") for i in range(num)]
    for p in paths:
        check_output(p, inputs, overwrite)
        check_output(p.with_suffix(".png"), inputs, overwrite)
        if audio is not None:
            check_output(p.with_suffix("." + audio), inputs, overwrite)
    return paths


def generate_files(checkpoint: str | Path | None, out: str | Path, num: int = 1, seconds: float | None = None,
                   tokens: int | None = None, temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0, top_p: float = 1.0,
                   primer: str | Path | None = None, seed: int = 0, device: str = "cpu",
                   max_note_steps: int | None = None, overwrite: bool = False,
                   primer_pitches: Sequence[int] | None = None, tempo: float | None = None,
                   program: int | None = None, audio: str | None = None, sample_rate: int = 44100,
                   soundfont: str | Path | None = None, engine: str = "auto") -> list[dict]:
    """Write ``num`` generated MIDI files (and a piano-roll PNG beside each, and audio with ``audio``),
    atomically.

    Args:
        checkpoint: a bundle path, a shipped model name, or None for the shipped ``music``.
        out: a file or a folder (see :func:`output_paths`); never an input, never an existing file unless
            ``overwrite``.
        seconds / tokens: length per piece, primer included: ``seconds`` (default 30, at most
            ``MAX_SECONDS``) or ``tokens`` event tokens (piano-roll models: frames, at most ``MAX_TOKENS``).
        max_note_steps: longest note written (grid steps); default: the longest note of the training data
            (stored in the bundle), else no limit.
        primer / primer_pitches: a MIDI file to continue, or pitches sounded together for one quarter note
            (Magenta's ``--primer_pitches``), e.g. ``[60, 64, 67]``.
        tempo: bpm of the output (beat-grid models; default the vocabulary's, 120); ``seconds`` counts at it.
        program: General MIDI program 0..127 of every output instrument (default: as generated, 0 = piano).
        audio: "wav" or "flac": also render each piece beside its ``.mid`` (see :mod:`.render`), at
            ``sample_rate`` with ``soundfont`` / ``engine``.
    A primer at least as long as the requested length raises UserError; a primer without notes is ignored
    with a warning on stderr.
    Returns one dict per file: ``{"midi", "png", "n_notes", "seconds", "pitch_min", "pitch_max"}`` (+ with
    ``audio``: ``"audio"`` and the render's ``engine``, ``compute_seconds``, ``speed``).
    """
    if seconds is None and tokens is None:
        seconds = 30.0
    if seconds is not None and not (0 < seconds <= MAX_SECONDS and math.isfinite(seconds)):
        raise UserError(f"--seconds {seconds}: must be in (0, {MAX_SECONDS:g}]")
    if tokens is not None and not 0 < tokens <= MAX_TOKENS:
        raise UserError(f"--tokens {tokens}: must be in [1, {MAX_TOKENS}]")
    if not (math.isfinite(temperature) and temperature > 0):
        raise UserError(f"--temperature {temperature}: must be finite and > 0")
    if num < 1:
        raise UserError(f"--num {num}: must be >= 1")
    if primer is not None and primer_pitches:
        raise UserError("give --primer or --primer-pitches, not both")
    if tempo is not None and not (MIN_BPM <= tempo <= MAX_BPM and math.isfinite(tempo)):
        raise UserError(f"--tempo {tempo}: must be in [{MIN_BPM:g}, {MAX_BPM:g}] bpm")
    if program is not None and not 0 <= program <= 127:
        raise UserError(f"--program {program}: must be a General MIDI program in [0, 127]")
    if audio is not None and audio not in ("wav", "flac"):
        raise UserError(f"--audio {audio}: must be wav or flac")
    source = _bundle.resolve(checkpoint, "music", SHIPPED)  # the checkpoint file is an input too
    paths = output_paths(out, num, overwrite, [primer, source], audio)
    if audio is not None and any(p.suffix.lower() == "." + audio for p in paths):
        raise UserError(f"--out {out}: name the MIDI file (.mid); the {audio} file goes beside it")
    model, b = load_music(source, device)
    ex = b["extras"]
    vcfg = MidiVocabConfig.from_dict(b["front_end"] if ex["data_kind"] == "tokens" else ex["pianoroll"]["vocab"])
    if tempo is not None:
        if vcfg.time_unit != "beats":
            raise UserError(f"--tempo: this model's time grid is in {vcfg.time_unit} (its tempo is in the notes "
                            "it plays); --tempo applies to beat-grid models")
        vcfg = dataclasses.replace(vcfg, tempo=float(tempo))
    vocab = MidiVocab(vcfg)
    prim_notes = []
    if primer_pitches:
        prim_notes = primer_chord(primer_pitches, vcfg)
    elif primer is not None:
        prim_notes = read_notes(primer, vcfg, allow_empty=True)
        if not prim_notes:
            print(f"{primer}: primer has no notes in the vocabulary's range: generating without a primer",
                  file=sys.stderr)
    if ex["data_kind"] == "tokens":
        ptoks = encode_notes(prim_notes, vocab)
        max_steps = None if seconds is None else math.ceil(seconds / vcfg.seconds_per_step)
        prim_steps = max((n.end for n in prim_notes), default=0)
        if tokens is not None and len(ptoks) >= tokens:
            raise UserError(f"{primer}: the primer is {len(ptoks)} tokens, not shorter than the requested {tokens}")
        if max_steps is not None and prim_steps >= max_steps:
            raise UserError(f"{primer}: the primer lasts {prim_steps * vcfg.seconds_per_step:.1f} s, not shorter "
                            f"than the requested {seconds:g} s")
        # in seconds mode the token budget is generous: at most 8 events per grid step on average
        budget = tokens - len(ptoks) if tokens is not None else min(max(64, 8 * max_steps), MAX_TOKENS)
        seqs = sample_tokens(model, vocab, num, budget, max_steps, temperature, top_k, top_p, ptoks, seed,
                             device=device)
        max_note = max_note_steps if max_note_steps is not None else ex.get("max_note_steps")
        pms = [tokens_to_pretty_midi(s, vocab, max_steps, max_note) for s in seqs]
    else:
        prcfg = PianoRollConfig.from_dict(ex["pianoroll"])
        fsec = vcfg.seconds_per_step * prcfg.frame_steps
        roll = notes_to_roll(prim_notes, prcfg) if prim_notes else None
        n_prim = 0 if roll is None else len(roll)
        total = tokens if tokens is not None else max(1, round(seconds / fsec))
        if n_prim >= total:
            raise UserError(f"{primer}: the primer is {n_prim} frames, not shorter than the requested {total}")
        rolls = sample_rolls(model, num, total - n_prim, temperature,
                             None if roll is None else torch.from_numpy(roll), seed, device)
        pms = [notes_to_midi(roll_to_notes(r.cpu().numpy(), prcfg.frame_steps, prcfg.lo), vcfg) for r in rolls]
    if program is not None:
        for pm in pms:
            for inst in pm.instruments:
                inst.program = int(program)
    warned = []  # the fallback warning once, not once per piece

    def warn_once(msg):
        if not warned:
            warned.append(msg)
            print(msg, file=sys.stderr)
    results = []
    for pm, path in zip(pms, paths):
        atomic_write(path, lambda tmp: pm.write(str(tmp)))
        png = atomic_write(path.with_suffix(".png"), lambda tmp: plot_pianoroll(pm, tmp, title=path.name))
        back = pretty_midi.PrettyMIDI(str(path))  # what a reader sees
        notes = [n for i in back.instruments for n in i.notes]
        results.append({"midi": str(path), "png": str(png), "n_notes": len(notes),
                        "seconds": round(back.get_end_time(), 3),
                        "pitch_min": min((n.pitch for n in notes), default=None),
                        "pitch_max": max((n.pitch for n in notes), default=None)})
        if audio is not None:
            r = render_file(path, path.with_suffix("." + audio), sample_rate, engine, soundfont, overwrite=True,
                            pm=back, warn=warn_once)  # the outputs were checked before anything was written
            results[-1].update({k: r[k] for k in ("audio", "engine", "compute_seconds", "speed")})
    return results


def primer_chord(pitches: Sequence[int], vcfg: MidiVocabConfig) -> list:
    """Notes of ``pitches`` sounded together for one quarter note (0.5 s on a seconds grid), at the velocity
    the vocabulary would carry for 80."""
    from encoders.midi import Note, bin_velocity, velocity_bin

    bad = [p for p in pitches if not vcfg.pitch_min <= p <= vcfg.pitch_max]
    if bad:
        raise UserError(f"--primer-pitches {bad[0]}: outside the model's pitch range "
                        f"[{vcfg.pitch_min}, {vcfg.pitch_max}]")
    q = vcfg.steps_per_quarter if vcfg.time_unit == "beats" else max(1, round(0.5 / vcfg.seconds_per_step))
    vel = (bin_velocity(velocity_bin(80, vcfg.velocity_bins), vcfg.velocity_bins) if vcfg.velocity_bins > 1
           else vcfg.default_velocity)
    return [Note(0, q, int(p), vel) for p in sorted(set(int(p) for p in pitches))]


__all__ = ["SHIPPED", "MAX_SECONDS", "MAX_TOKENS", "DEFAULT_TEMPERATURE", "load_music", "evaluate_bundle", "evaluate_checkpoint",
           "output_paths", "generate_files", "primer_chord", "render_file", "DecodeError"]
