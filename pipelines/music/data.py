"""Data for the music models: token pieces, parallel token streams for truncated BPTT, piano rolls."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from encoders.config import DictConfig
from encoders.io import DecodeError, SkipCounter
from encoders.io.midi import load_notes as read_notes
from encoders.midi import (MidiVocab, MidiVocabConfig, Note, encode_notes, estimate_key, pianoroll,
                           shift_to_c, transpose_notes, transpose_range, transpose_tokens)


def load_notes(files: Sequence[str | Path], cfg: MidiVocabConfig, skips: SkipCounter | None = None,
               progress: bool = True, desc: str = "reading MIDI") -> tuple[list[list[Note]], list[str]]:
    """Quantised, cleaned notes of every readable file; bad files (one line naming them) go to ``skips``.
    Files are parsed by symusic's C++ reader (:func:`encoders.io.midi.load_notes`; the same notes as
    pretty_midi gives, about 7x faster)."""
    pieces, names = [], []
    for f in tqdm(list(files), desc=desc, disable=not progress, file=sys.stderr, leave=False):
        try:
            notes = read_notes(f, cfg)
            if not notes:
                raise DecodeError(f, f"no notes inside the vocabulary's pitch range [{cfg.pitch_min}, {cfg.pitch_max}]")
        except DecodeError as e:
            if skips is None:
                raise
            skips.add(e)
            print(str(e), file=sys.stderr)
            continue
        pieces.append(notes)
        names.append(str(f))
    return pieces, names


def load_token_pieces(files: Sequence[str | Path], vocab: MidiVocab, skips: SkipCounter | None = None,
                      progress: bool = True) -> tuple[list[np.ndarray], list[str]]:
    """Each readable file as one int64 array ``[BOS, events..., EOS]``."""
    pieces, names = load_notes(files, vocab.config, skips, progress, "tokenising")
    return [np.asarray(encode_notes(p, vocab, bos_eos=True), dtype=np.int64) for p in pieces], names


class TokenStreams(Dataset):
    """Truncated-BPTT batches, word_language_model style.

    Each epoch the pieces (``[BOS ... EOS]`` arrays) are put in a seeded order, each transposed by a seeded
    random shift (within ±``max_transpose`` and the piano range), concatenated and cut into ``n_streams``
    parallel streams (B, N).  Item ``i`` is chunk ``i``: ``(x, y, first)`` with x, y (B, L) (y is x shifted
    by one) and ``first`` True for chunk 0, when the carried state must be reset.  Read the items in order
    (``shuffle=False``, batch size 1, :func:`first_item` as collate) so that chunk i+1 continues chunk i.

    Randomness is drawn from (seed, epoch, piece index) only, never from the global RNG.
    """

    def __init__(self, pieces: Sequence[np.ndarray], vocab: MidiVocab, n_streams: int = 32, bptt: int = 128,
                 seed: int = 0, max_transpose: int = 0, lo: int = 21, hi: int = 108):
        if not pieces:
            raise ValueError("no training pieces")
        self.pieces = [np.asarray(p, dtype=np.int64) for p in pieces]
        self.vocab, self.n_streams, self.bptt = vocab, n_streams, bptt
        self.seed, self.max_transpose, self.lo, self.hi = seed, max_transpose, lo, hi
        total = sum(len(p) for p in self.pieces)
        self.n = total // n_streams  # tokens per stream (the tail that does not fill a row is dropped)
        if self.n < 2:
            raise ValueError(f"{total} tokens cannot fill {n_streams} streams")
        self.epoch = -1
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.epoch:
            return
        self.epoch = epoch
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.pieces))
        parts = []
        for i in order:
            p = self.pieces[i]
            if self.max_transpose:
                lo, hi = transpose_range(p, self.vocab, self.lo, self.hi)
                lo, hi = max(lo, -self.max_transpose), min(hi, self.max_transpose)
                if lo <= hi:
                    k = int(np.random.default_rng([self.seed, epoch, int(i)]).integers(lo, hi + 1))
                    p = transpose_tokens(p, self.vocab, k)
            parts.append(p)
        stream = np.concatenate(parts)[: self.n * self.n_streams]
        self.data = torch.from_numpy(stream.reshape(self.n_streams, self.n))  # (B, N)

    def __len__(self) -> int:
        return -(-(self.n - 1) // self.bptt)

    def __getitem__(self, i: int):
        s = i * self.bptt
        L = min(self.bptt, self.n - 1 - s)
        return self.data[:, s:s + L], self.data[:, s + 1:s + 1 + L], torch.tensor(i == 0)


def first_item(items):
    """Collate for datasets whose items are already whole batches (batch size 1 in the trainer)."""
    return items[0]


# --- piano rolls ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PianoRollConfig(DictConfig):
    """Boulanger-Lewandowski et al. 2012 style frames: pitches ``lo..hi`` (piano 21..108) sampled every
    ``frame_steps`` grid steps of ``vocab`` (chorales: 4 steps per quarter → quarter-note frames), each
    piece transposed to C major / C minor (Krumhansl–Schmuckler key finding with Aarden–Essen profiles) when ``to_c``."""

    vocab: dict = None  # MidiVocabConfig.to_dict(); None: the chorale preset
    frame_steps: int = 4
    lo: int = 21
    hi: int = 108
    to_c: bool = True


    @property
    def vocab_config(self) -> MidiVocabConfig:
        from encoders.midi import CHORALE

        return CHORALE if self.vocab is None else MidiVocabConfig.from_dict(self.vocab)

    @property
    def n_pitches(self) -> int:
        return self.hi - self.lo + 1


def notes_to_roll(notes: Sequence[Note], cfg: PianoRollConfig) -> np.ndarray:
    """Notes → (T, P) multi-hot frames, transposed to C when ``cfg.to_c`` (octave-folded into the range)."""
    if cfg.to_c and notes:
        tonic, _ = estimate_key(notes)
        k = shift_to_c(tonic)
        for kk in (k, k - 12, k + 12):
            try:
                notes = transpose_notes(notes, kk, cfg.lo, cfg.hi)
                break
            except ValueError:
                continue
    return pianoroll(notes, cfg.frame_steps, cfg.lo, cfg.hi)


def load_rolls(files: Sequence[str | Path], cfg: PianoRollConfig, skips: SkipCounter | None = None,
               progress: bool = True) -> tuple[list[np.ndarray], list[str]]:
    pieces, names = load_notes(files, cfg.vocab_config, skips, progress, "piano rolls")
    return [notes_to_roll(p, cfg) for p in pieces], names


class RollPieces(Dataset):
    """Whole pieces as (T, P) float frames; :func:`pad_rolls` batches them."""

    def __init__(self, rolls: Sequence[np.ndarray]):
        self.rolls = [torch.from_numpy(np.asarray(r, dtype=np.float32)) for r in rolls if len(r) > 0]
        if not self.rolls:
            raise ValueError("no piano-roll pieces")

    def __len__(self) -> int:
        return len(self.rolls)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rolls[i]


def pad_rolls(items: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """→ (rolls (B, T, P) zero-padded, lengths (B,))."""
    lengths = torch.tensor([len(r) for r in items])
    out = torch.zeros(len(items), int(lengths.max()), items[0].shape[1])
    for b, r in enumerate(items):
        out[b, : len(r)] = r
    return out, lengths


__all__ = ["load_notes", "load_token_pieces", "TokenStreams", "first_item", "PianoRollConfig", "notes_to_roll",
           "load_rolls", "RollPieces", "pad_rolls"]
