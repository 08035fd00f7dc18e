"""Evaluation: NLL per token (event models), the unigram baseline, NLL per frame (piano rolls)."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .models import pianoroll_inputs


@torch.no_grad()
def token_nll(model: nn.Module, pieces: Sequence[np.ndarray], batch_size: int = 16, device="cpu") -> tuple[float, int]:
    """Summed NLL (nats) and number of predicted tokens over whole pieces ``[BOS ... EOS]``.

    Every token after BOS is predicted (EOS included), each piece from a zero state, as in generation.
    """
    model.eval()
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
    total, count = 0.0, 0
    for s in range(0, len(order), batch_size):
        batch = [pieces[i] for i in order[s:s + batch_size]]
        lengths = torch.tensor([len(p) - 1 for p in batch])
        T = int(lengths.max())
        x = torch.zeros(len(batch), T, dtype=torch.long)
        y = torch.full((len(batch), T), -100, dtype=torch.long)
        for b, p in enumerate(batch):
            p = torch.as_tensor(p)
            x[b, : len(p) - 1] = p[:-1]
            y[b, : len(p) - 1] = p[1:]
        logits, _ = model(x.to(device), lengths)
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), y.to(device).flatten(), ignore_index=-100,
                                       reduction="sum"))
        count += int(lengths.sum())
    return total, count


def unigram_counts(pieces: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Counts of the predicted tokens (everything after BOS) of the training pieces."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for p in pieces:
        np.add.at(counts, np.asarray(p[1:]), 1)
    return counts


def unigram_nll(train_pieces: Sequence[np.ndarray], test_pieces: Sequence[np.ndarray], vocab_size: int,
                alpha: float = 1.0) -> tuple[float, int]:
    """Summed NLL and token count of ``test_pieces`` under the add-``alpha`` unigram of ``train_pieces``."""
    return unigram_nll_from_counts(unigram_counts(train_pieces, vocab_size), test_pieces, alpha)


def unigram_nll_from_counts(counts: np.ndarray, test_pieces: Sequence[np.ndarray], alpha: float = 1.0):
    """As :func:`unigram_nll` from the training counts (stored in checkpoints)."""
    counts = np.asarray(counts, dtype=np.float64) + alpha
    logp = np.log(counts / counts.sum())
    toks = np.concatenate([np.asarray(p[1:]) for p in test_pieces]) if test_pieces else np.zeros(0, dtype=int)
    return float(-logp[toks].sum()), int(len(toks))


@torch.no_grad()
def roll_nll(model: nn.Module, rolls: Sequence[np.ndarray], batch_size: int = 32, device="cpu") -> tuple[float, int]:
    """Summed NLL (nats) and number of frames: each frame's P Bernoulli log-likelihoods summed
    (Boulanger-Lewandowski et al. 2012: NLL per time step), the first frame predicted from a zero frame."""
    model.eval()
    total, count = 0.0, 0
    for s in range(0, len(rolls), batch_size):
        batch = [torch.as_tensor(r, dtype=torch.float32) for r in rolls[s:s + batch_size] if len(r)]
        if not batch:
            continue
        lengths = torch.tensor([len(r) for r in batch])
        y = torch.zeros(len(batch), int(lengths.max()), batch[0].shape[1])
        for b, r in enumerate(batch):
            y[b, : len(r)] = r
        y = y.to(device)
        logits, _ = model(pianoroll_inputs(y), lengths)
        mask = (torch.arange(y.shape[1], device=device)[None] < lengths.to(device)[:, None]).float()
        bce = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none").sum(-1)  # (B, T)
        total += float((bce * mask).sum())
        count += int(lengths.sum())
    return total, count


def summary(total: float, count: int, unit: str) -> dict:
    nll = total / max(count, 1)
    return {f"nll_per_{unit}": nll, "perplexity": math.exp(min(nll, 700.0)), f"n_{unit}s": count}


__all__ = ["token_nll", "unigram_counts", "unigram_nll", "unigram_nll_from_counts", "roll_nll", "summary"]
