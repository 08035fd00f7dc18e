"""Using a trained music checkpoint: evaluation on a corpus split and generation of MIDI files."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from encoders.io import DecodeError, SkipCounter
from encoders.io.midi import read_midi, write_midi
from encoders.midi import MidiVocab, MidiVocabConfig, encode_notes, midi_to_notes, notes_to_midi

from .corpus import corpus_files
from .data import PianoRollConfig, load_rolls, load_token_pieces, notes_to_roll
from .evaluate import roll_nll, summary, token_nll, unigram_nll_from_counts
from .generate import plot_pianoroll, roll_to_notes, sample_rolls, sample_tokens, tokens_to_pretty_midi
from .train import load_model


def evaluate_checkpoint(checkpoint: str | Path, data_dir: str | Path, split: str = "test", progress: bool = True,
                        device: str = "cpu") -> dict:
    """NLL of ``split`` of ``data_dir`` under the checkpoint: ``nll_per_token`` (or ``nll_per_frame``),
    ``perplexity``, ``n_files``, ``n_tokens`` (``n_frames``), ``skipped``; for event models also the
    unigram baseline (counts of the checkpoint's training data, add-one) on the same tokens."""
    model, extra = load_model(checkpoint, device)
    files = corpus_files(data_dir, split)
    skips = SkipCounter()
    vocab = MidiVocab(MidiVocabConfig.from_dict(extra["vocab"]))
    out = {"checkpoint": str(checkpoint), "model": extra["model_name"], "split": split}
    if extra["data_kind"] == "tokens":
        pieces, _ = load_token_pieces(files, vocab, skips, progress)
        out.update(summary(*token_nll(model, pieces, device=device), "token"))
        base = unigram_nll_from_counts(extra["unigram_counts"], pieces)
        out["unigram_nll_per_token"] = base[0] / max(base[1], 1)
    else:
        prcfg = PianoRollConfig.from_dict(extra["pianoroll"])
        rolls, _ = load_rolls(files, prcfg, skips, progress)
        out.update(summary(*roll_nll(model, rolls, device=device), "frame"))
    out["n_files"] = len(files) - len(skips)
    out["skipped"] = len(skips)
    if len(skips):
        print(skips.summary("files"), file=sys.stderr)
    return out


def _out_paths(out: Path, num: int) -> list[Path]:
    if num == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i:03d}{out.suffix or '.mid'}") for i in range(num)]


def generate_files(checkpoint: str | Path, out: str | Path, num: int = 1, seconds: float | None = None,
                   tokens: int | None = None, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                   primer: str | Path | None = None, seed: int = 0, device: str = "cpu",
                   max_note_steps: int | None = None) -> list[dict]:
    """Write ``num`` generated MIDI files (and a piano-roll PNG beside each).

    Length: ``tokens`` = event tokens per piece (piano-roll models: frames), primer included; or
    ``seconds`` per piece, primer included (default 30 s).  ``max_note_steps``: longest note written (grid
    steps); default: the longest note of the training data (stored in the checkpoint), else no limit.  A primer at least as long as the requested
    length raises ValueError; a primer without notes is ignored with a warning on stderr.
    Returns one dict per file: ``{"midi", "png", "n_notes", "seconds", "pitch_min", "pitch_max"}``.
    """
    model, extra = load_model(checkpoint, device)
    vcfg = MidiVocabConfig.from_dict(extra["vocab"])
    vocab = MidiVocab(vcfg)
    if seconds is None and tokens is None:
        seconds = 30.0
    if (seconds is not None and seconds <= 0) or (tokens is not None and tokens <= 0):
        raise ValueError("the requested length must be positive")
    prim_notes = []
    if primer is not None:
        prim_notes = midi_to_notes(read_midi(primer, allow_empty=True), vcfg)
        if not prim_notes:
            print(f"{primer}: primer has no notes in the vocabulary's range: generating without a primer",
                  file=sys.stderr)
    out = Path(out)
    paths = _out_paths(out, num)
    if extra["data_kind"] == "tokens":
        ptoks = encode_notes(prim_notes, vocab)
        max_steps = None if seconds is None else math.ceil(seconds / vcfg.seconds_per_step)
        prim_steps = max((n.end for n in prim_notes), default=0)
        if tokens is not None and len(ptoks) >= tokens:
            raise ValueError(f"{primer}: the primer is {len(ptoks)} tokens, not shorter than the requested {tokens}")
        if max_steps is not None and prim_steps >= max_steps:
            raise ValueError(f"{primer}: the primer lasts {prim_steps * vcfg.seconds_per_step:.1f} s, not shorter "
                             f"than the requested {seconds:g} s")
        # in seconds mode the token budget is generous: at most 8 events per grid step on average
        budget = tokens - len(ptoks) if tokens is not None else max(64, 8 * max_steps)
        seqs = sample_tokens(model, vocab, num, budget, max_steps, temperature, top_k, top_p, ptoks, seed,
                             device=device)
        max_note = max_note_steps if max_note_steps is not None else extra.get("max_note_steps")
        pms = [tokens_to_pretty_midi(s, vocab, max_steps, max_note) for s in seqs]
    else:
        prcfg = PianoRollConfig.from_dict(extra["pianoroll"])
        fsec = vcfg.seconds_per_step * prcfg.frame_steps
        roll = notes_to_roll(prim_notes, prcfg) if prim_notes else None
        n_prim = 0 if roll is None else len(roll)
        total = tokens if tokens is not None else max(1, round(seconds / fsec))
        if n_prim >= total:
            raise ValueError(f"{primer}: the primer is {n_prim} frames, not shorter than the requested {total}")
        rolls = sample_rolls(model, num, total - n_prim, temperature,
                             None if roll is None else torch.from_numpy(roll), seed, device)
        pms = [notes_to_midi(roll_to_notes(r.cpu().numpy(), prcfg.frame_steps, prcfg.lo), vcfg) for r in rolls]
    results = []
    for pm, path in zip(pms, paths):
        write_midi(pm, path)
        png = plot_pianoroll(pm, path.with_suffix(".png"), title=path.name)
        back = pretty_midi.PrettyMIDI(str(path))  # what a reader sees
        notes = [n for i in back.instruments for n in i.notes]
        results.append({"midi": str(path), "png": str(png), "n_notes": len(notes),
                        "seconds": round(back.get_end_time(), 3),
                        "pitch_min": min((n.pitch for n in notes), default=None),
                        "pitch_max": max((n.pitch for n in notes), default=None)})
    return results


__all__ = ["evaluate_checkpoint", "generate_files", "DecodeError"]
