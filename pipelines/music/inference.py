"""Using a trained music bundle (a file or a shipped model): evaluation on a corpus split and generation of
MIDI files."""
from __future__ import annotations

import math
import os
import re
import sys
import tempfile
from pathlib import Path

import pretty_midi
import torch

from encoders.io import DecodeError, SkipCounter
from encoders.io.midi import read_midi
from encoders.midi import MidiVocab, MidiVocabConfig, encode_notes, midi_to_notes, notes_to_midi

from .. import bundle as _bundle
from ..cli_common import UserError, check_output
from .corpus import corpus_files
from .data import PianoRollConfig, load_rolls, load_token_pieces, notes_to_roll
from .evaluate import roll_nll, summary, token_nll, unigram_nll_from_counts
from .generate import plot_pianoroll, roll_to_notes, sample_rolls, sample_tokens, tokens_to_pretty_midi

SHIPPED = "music"  # the shipped model used when no checkpoint is given
MAX_SECONDS = 600.0  # longest piece ``generate`` writes (a bound, so that no request runs without end)
MAX_TOKENS = 100_000  # most event tokens (piano roll: frames) per piece


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
def output_paths(out: str | Path, num: int, overwrite: bool = False, inputs=()) -> list[Path]:
    """Where ``num`` pieces go, checked (never over an input; never over an existing file without
    ``overwrite``).  ``out``: a file name (``song.mid``; with ``num`` > 1 ``song_000.mid`` ...), or a folder
    (existing, or named with a trailing ``/``): numbered files ``music_NNN.mid`` inside it, numbered after
    those already there.  Each piece also gets a ``.png`` beside it."""
    text = str(out)
    out = Path(out)
    for i in inputs:
        if i is not None and (out.resolve() == Path(i).resolve()):
            raise UserError(f"--out {out} is one of the command's inputs; refusing to write over it")
    if out.is_dir() or text.endswith(("/", os.sep)):
        taken = [int(m.group(1)) for f in (out.iterdir() if out.is_dir() else ())
                 if (m := re.fullmatch(r"music_(\d+)\.(mid|png)", f.name))]
        first = max(taken, default=-1) + 1
        paths = [out / f"music_{first + i:03d}.mid" for i in range(num)]
    elif num == 1:
        paths = [out]
    else:
        paths = [out.with_name(f"{out.stem}_{i:03d}{out.suffix or '.mid'}") for i in range(num)]
    for p in paths:
        check_output(p, inputs, overwrite)
        check_output(p.with_suffix(".png"), inputs, overwrite)
    return paths


def _atomic(path: Path, write) -> Path:
    """``write(tmp)`` to a temp file beside ``path`` (same suffix), then rename it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def generate_files(checkpoint: str | Path | None, out: str | Path, num: int = 1, seconds: float | None = None,
                   tokens: int | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   primer: str | Path | None = None, seed: int = 0, device: str = "cpu",
                   max_note_steps: int | None = None, overwrite: bool = False) -> list[dict]:
    """Write ``num`` generated MIDI files (and a piano-roll PNG beside each), atomically.

    Args:
        checkpoint: a bundle path, a shipped model name, or None for the shipped ``music``.
        out: a file or a folder (see :func:`output_paths`); never an input, never an existing file unless
            ``overwrite``.
        seconds / tokens: length per piece, primer included: ``seconds`` (default 30, at most
            ``MAX_SECONDS``) or ``tokens`` event tokens (piano-roll models: frames, at most ``MAX_TOKENS``).
        max_note_steps: longest note written (grid steps); default: the longest note of the training data
            (stored in the bundle), else no limit.
    A primer at least as long as the requested length raises UserError; a primer without notes is ignored
    with a warning on stderr.
    Returns one dict per file: ``{"midi", "png", "n_notes", "seconds", "pitch_min", "pitch_max"}``.
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
    source = _bundle.resolve(checkpoint, "music", SHIPPED)  # the checkpoint file is an input too
    paths = output_paths(out, num, overwrite, [primer, source])
    model, b = load_music(source, device)
    ex = b["extras"]
    vcfg = MidiVocabConfig.from_dict(b["front_end"] if ex["data_kind"] == "tokens" else ex["pianoroll"]["vocab"])
    vocab = MidiVocab(vcfg)
    prim_notes = []
    if primer is not None:
        prim_notes = midi_to_notes(read_midi(primer, allow_empty=True), vcfg)
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
    results = []
    for pm, path in zip(pms, paths):
        _atomic(path, lambda tmp: pm.write(str(tmp)))
        png = _atomic(path.with_suffix(".png"), lambda tmp: plot_pianoroll(pm, tmp, title=path.name))
        back = pretty_midi.PrettyMIDI(str(path))  # what a reader sees
        notes = [n for i in back.instruments for n in i.notes]
        results.append({"midi": str(path), "png": str(png), "n_notes": len(notes),
                        "seconds": round(back.get_end_time(), 3),
                        "pitch_min": min((n.pitch for n in notes), default=None),
                        "pitch_max": max((n.pitch for n in notes), default=None)})
    return results


__all__ = ["SHIPPED", "MAX_SECONDS", "MAX_TOKENS", "load_music", "evaluate_bundle", "evaluate_checkpoint",
           "output_paths", "generate_files", "DecodeError"]
