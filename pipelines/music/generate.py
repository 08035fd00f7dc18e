"""Generation: sampling step by step with the recurrent state carried (the prefix is never re-run),
batched over N pieces; temperature, top-k, top-p; primer; piano-roll PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from encoders.midi import MidiVocab, Note, decode_tokens, notes_to_midi

from ..plots import save_figure
from .models import pianoroll_inputs


def filter_logits(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Scale by 1/temperature, keep the ``top_k`` largest and the smallest set of probability >= ``top_p``.
    logits (B, V) → (B, V) with -inf where removed."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_l, idx = logits.sort(dim=-1, descending=True)
        probs = sorted_l.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the best token always stays)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return logits


@torch.no_grad()
def sample_tokens(model: nn.Module, vocab: MidiVocab, n: int = 1, max_tokens: int = 512, max_steps: int | None = None,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, primer: Sequence[int] = (),
                  seed: int = 0, carry_state: bool = True, return_logits: bool = False, device="cpu"):
    """Sample ``n`` continuations of ``[BOS] + primer`` in one batch.

    Args:
        max_tokens: new tokens at most per piece.
        max_steps: stop a piece once its time (primer included) reaches this many grid steps.
        carry_state: True: feed one token per step with the carried state (the prefix is read once);
            False: re-run the whole prefix every step (for benchmarks and the equality test only).
        return_logits: also return the (n, K, V) unfiltered logits each new token was drawn from.
    Returns:
        list of n token lists (primer + new tokens, without BOS; EOS and what follows cut off)
        [, logits (n, K, V)].
    """
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    prefix = torch.tensor([vocab.BOS] + [int(t) for t in primer], dtype=torch.long, device=device)
    seq = prefix.unsqueeze(0).repeat(n, 1)  # (n, P+1)
    logits, state = model(seq)
    last = logits[:, -1]  # (n, V)
    shift_steps = torch.zeros(vocab.size, dtype=torch.long)
    shift_steps[vocab.shift0:vocab.vel0] = torch.arange(1, vocab.config.max_shift_steps + 1)
    shift_steps = shift_steps.to(device)
    t = shift_steps[prefix].sum().repeat(n)  # time so far, per piece
    done = torch.zeros(n, dtype=torch.bool, device=device)
    if max_steps is not None:
        done |= t >= max_steps
    new, all_logits = [], []
    banned = torch.zeros(vocab.size, dtype=torch.bool, device=device)
    banned[[vocab.PAD, vocab.BOS]] = True  # never sampled inside a piece
    for _ in range(max_tokens):
        if bool(done.all()):
            break
        if return_logits:
            all_logits.append(last.float().cpu())
        f = filter_logits(last.float().masked_fill(banned, float("-inf")), temperature, top_k, top_p)
        tok = torch.multinomial(f.softmax(-1).cpu(), 1, generator=g).squeeze(1).to(device)  # (n,)
        tok = torch.where(done, torch.full_like(tok, vocab.PAD), tok)
        new.append(tok)
        t = t + shift_steps[tok]
        done = done | (tok == vocab.EOS)
        if max_steps is not None:
            done = done | (t >= max_steps)
        if carry_state:
            last, state = model(tok.unsqueeze(1), state=state)
            last = last[:, 0]
        else:
            seq = torch.cat([seq, tok.unsqueeze(1)], dim=1)
            last = model(seq)[0][:, -1]
    out = []
    gen = torch.stack(new, 1).cpu() if new else torch.zeros(n, 0, dtype=torch.long)
    for b in range(n):
        toks = [int(x) for x in primer]
        for x in gen[b].tolist():
            if x in (vocab.EOS, vocab.PAD):
                break
            toks.append(x)
        out.append(toks)
    if return_logits:
        return out, (torch.stack(all_logits, 1) if all_logits else torch.zeros(n, 0, vocab.size))
    return out


def clip_notes(notes: Sequence[Note], end_step: int) -> list[Note]:
    """Drop notes starting at/after ``end_step`` and end the others there at the latest."""
    return [n._replace(end=min(n.end, end_step)) for n in notes if n.start < end_step]


def tokens_to_pretty_midi(tokens: Sequence[int], vocab: MidiVocab, max_steps: int | None = None,
                          max_note_steps: int | None = None):
    notes = decode_tokens(tokens, vocab, max_note_steps=max_note_steps)
    if max_steps is not None:
        notes = clip_notes(notes, max_steps)
    return notes_to_midi(notes, vocab.config)


@torch.no_grad()
def sample_rolls(model: nn.Module, n: int = 1, frames: int = 64, temperature: float = 1.0, primer: Tensor | None = None,
                 seed: int = 0, device="cpu") -> Tensor:
    """Sample piano-roll frames from a ``music-pianoroll`` model with the state carried.

    primer: (F, P) frames to continue.  Returns (n, F + frames, P) in {0, 1}."""
    model.eval()
    g = torch.Generator(device="cpu").manual_seed(seed)
    P = model.n_pitches
    prim = torch.zeros(0, P) if primer is None else torch.as_tensor(primer, dtype=torch.float32)
    seq = prim.unsqueeze(0).repeat(n, 1, 1).to(device)
    inp = pianoroll_inputs(torch.cat([seq, torch.zeros(n, 1, P, device=device)], 1))  # zero frame + primer
    logits, state = model(inp)
    last = logits[:, -1]
    out = [seq]
    for _ in range(frames):
        p = torch.sigmoid(last.float() / temperature).cpu()
        fr = torch.bernoulli(p, generator=g).to(device)  # (n, P)
        out.append(fr.unsqueeze(1))
        last, state = model(fr.unsqueeze(1), state=state)
        last = last[:, 0]
    return torch.cat(out, 1)


def roll_to_notes(roll: np.ndarray, frame_steps: int, lo: int, velocity: int = 80) -> list[Note]:
    """(T, P) frames → notes: a run of consecutive active frames of one pitch is one note."""
    roll = np.asarray(roll) > 0.5
    notes = []
    padded = np.vstack([np.zeros((1, roll.shape[1]), bool), roll, np.zeros((1, roll.shape[1]), bool)])
    diff = np.diff(padded.astype(np.int8), axis=0)
    for p in range(roll.shape[1]):
        on, off = np.flatnonzero(diff[:, p] == 1), np.flatnonzero(diff[:, p] == -1)
        notes += [Note(int(a) * frame_steps, int(b) * frame_steps, lo + p, velocity) for a, b in zip(on, off)]
    notes.sort(key=lambda x: (x.start, x.program, x.pitch))
    return notes


def plot_pianoroll(pm, path: str | Path, title: str | None = None, fs: int = 20) -> Path:
    """Piano-roll PNG of a ``PrettyMIDI`` (time in s on x, MIDI pitch on y)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roll = pm.get_piano_roll(fs=fs)  # (128, T)
    active = np.flatnonzero(roll.sum(1))
    lo, hi = (int(active.min()) - 2, int(active.max()) + 3) if len(active) else (48, 84)
    fig, ax = plt.subplots(figsize=(10, 3.5))
    T = roll.shape[1]
    ax.imshow(roll[lo:hi] > 0, aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
              extent=(0, T / fs, lo - 0.5, hi - 0.5))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


__all__ = ["filter_logits", "sample_tokens", "clip_notes", "tokens_to_pretty_midi", "sample_rolls", "roll_to_notes",
           "plot_pianoroll"]
