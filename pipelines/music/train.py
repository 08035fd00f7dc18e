"""Training wiring: corpus → data → registered model → the shared Trainer, with truncated BPTT for the
event-token models (the LSTM state carried, detached, between consecutive chunks of the same streams)."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from encoders.config import DictConfig
from encoders.io import SkipCounter
from encoders.midi import PRESETS, MidiVocab, MidiVocabConfig, decode_tokens
from pipelines.bundle import make_meta
from pipelines.cli_common import UserError
from pipelines.registry import get_model
from pipelines.trainer import TrainConfig, Trainer, seed_everything

from . import models as _models
from .corpus import corpus_files
from .data import PianoRollConfig, RollPieces, TokenStreams, first_item, load_rolls, load_token_pieces, pad_rolls
from .evaluate import roll_nll, summary, token_nll, unigram_counts
from .models import DATA_KINDS, model_config, pianoroll_inputs


@dataclass(frozen=True)
class MusicTrainConfig(DictConfig):
    """What ``lstm-media music train`` runs (stored in every bundle as ``task``); the defaults are the
    full-quality run (2 x 384 LSTM; the shipped model has its own smaller recipe, see :mod:`.ship`).

    Args:
        model: registry name ("music-lstm", "music-rnn", "music-pianoroll").
        preset: vocabulary preset of ``encoders.midi.PRESETS`` ("chorale": beats, 4 steps per quarter).
        model_kwargs: overrides of the model builder's defaults (hidden_size, num_layers, ...).
        epochs, lr, weight_decay, max_steps, seed: as :class:`pipelines.trainer.TrainConfig`.
        n_streams: parallel token streams (the batch) for truncated BPTT.
        bptt: tokens per chunk (gradient horizon); the state flows on across chunks.
        max_transpose: random transposition per piece and epoch within ± this (and the piano range).
        batch_size: pieces per batch for the piano-roll model.
    """

    model: str = "music-lstm"
    preset: str = "chorale"
    model_kwargs: dict = field(default_factory=dict)
    epochs: int = 40
    lr: float = 2e-3
    weight_decay: float = 0.01
    max_steps: int | None = None
    seed: int = 0
    n_streams: int = 32
    bptt: int = 128
    max_transpose: int = 5
    batch_size: int = 16
    progress: bool = True
    device: str = "auto"


class CarriedStateLoss:
    """``loss_fn`` for :class:`TokenStreams` batches that carries the recurrent state between chunks.

    The state returned by chunk i is detached (truncating back-propagation at the chunk border, as
    word_language_model's ``repackage_hidden``) and fed to chunk i+1; it is reset on chunk 0 of an epoch.
    :meth:`get_state`/:meth:`set_state` hand the carried state to the trainer's checkpoints, so that a run
    stopped in the middle of an epoch resumes exactly.
    """

    def __init__(self):
        self.state = None

    @staticmethod
    def _detach(state):
        return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()

    def get_state(self) -> dict:
        """The carried state as a dict of tensors (``{}`` before the first chunk)."""
        if self.state is None:
            return {}
        if isinstance(self.state, tuple):
            return {"h": self.state[0].detach().clone(), "c": self.state[1].detach().clone()}
        return {"h": self.state.detach().clone()}

    def set_state(self, d: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        if not d:
            self.state = None
        elif "c" in d:
            self.state = (d["h"], d["c"])
        else:
            self.state = d["h"]

    def __call__(self, model: nn.Module, batch):
        x, y, first = batch  # (B, L), (B, L), ()
        state = None if bool(first) else self.state
        if state is not None and (state[0] if isinstance(state, tuple) else state).shape[1] != x.shape[0]:
            state = None
        logits, state = model(x, state=state)  # (B, L, V)
        self.state = self._detach(state)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        return loss


def max_note_steps(pieces, vocab: MidiVocab) -> int:
    """Longest note (grid steps) among token pieces."""
    return max((n.end - n.start for p in pieces for n in decode_tokens(p, vocab)), default=1)


def roll_loss(model: nn.Module, batch):
    """Mean over valid frames of the summed per-pitch BCE (= NLL per frame)."""
    rolls, lengths = batch
    logits, _ = model(pianoroll_inputs(rolls), lengths)
    mask = (torch.arange(rolls.shape[1], device=rolls.device)[None] < lengths.to(rolls.device)[:, None]).float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), rolls, reduction="none").sum(-1)
    return (bce * mask).sum() / mask.sum()


def train(data_dir: str | Path, out_dir: str | Path, cfg: MusicTrainConfig = MusicTrainConfig(), *,
          resume: bool = True, stop_after: int | None = None, description: str | None = None) -> dict:
    """Train ``cfg.model`` on the train split of ``data_dir``, validating on its valid split.

    Checkpoints (``out_dir/best.pt``, ``last.pt``) are ``music`` bundles: model config, the vocabulary (config
    as ``front_end``, event names as ``vocab``), ``cfg`` as ``task``, and in ``extras`` what generation and
    evaluation need (``data_kind``, unigram counts and the longest note of the training data, or the
    piano-roll config).

    Args:
        resume: continue from ``out_dir/last.pt`` if there is one (False: ``--fresh``).
        stop_after: stop after this many optimizer steps, saving ``last.pt`` (as if interrupted).
        description: one sentence for ``extras["description"]``.
    Returns the trainer's result plus ``skipped`` (bad files), ``n_train``/``n_valid`` and ``n_params``.
    Raises ValueError for an unknown model or setting; UserError when the train or valid split has no usable
    file.
    """
    if cfg.model not in DATA_KINDS:
        raise ValueError(f"unknown music model {cfg.model!r}; known: {', '.join(sorted(DATA_KINDS))}")
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown vocabulary preset {cfg.preset!r}; presets: {', '.join(PRESETS)}")
    kind = DATA_KINDS[cfg.model]
    vcfg: MidiVocabConfig = PRESETS[cfg.preset]
    vocab = MidiVocab(vcfg)
    skips = SkipCounter()
    train_files, valid_files = corpus_files(data_dir, "train"), corpus_files(data_dir, "valid")
    seed_everything(cfg.seed)
    extras = {"data_kind": kind}
    if description:
        extras["description"] = description
    if kind == "tokens":
        train_p, _ = load_token_pieces(train_files, vocab, skips, cfg.progress)
        valid_p, _ = load_token_pieces(valid_files, vocab, skips, cfg.progress)
        _need(train_p, "train", data_dir, len(train_files))
        _need(valid_p, "valid", data_dir, len(valid_files))
        kwargs = model_config(cfg.model, vocab_size=len(vocab), **cfg.model_kwargs)
        train_set = TokenStreams(train_p, vocab, cfg.n_streams, cfg.bptt, cfg.seed, cfg.max_transpose)
        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=1, lr=cfg.lr, weight_decay=cfg.weight_decay, shuffle=False,
                           max_steps=cfg.max_steps, seed=cfg.seed, warmup_steps=min(100, 2 * len(train_set)),
                           progress=cfg.progress, device=cfg.device, log_every=10)
        loss_fn, collate = CarriedStateLoss(), first_item
        extras["unigram_counts"] = unigram_counts(train_p, len(vocab)).tolist()
        extras["max_note_steps"] = max_note_steps(train_p, vocab)  # generation never holds a note longer
        front_end, vocab_list = vcfg.to_dict(), list(vocab.tokens)

        def evaluate(m):
            dev = next(m.parameters()).device
            return {"loss": summary(*token_nll(m, valid_p, device=dev), "token")["nll_per_token"]}
        n_train, n_valid, unit = len(train_p), len(valid_p), "tokens"
        n_items = sum(len(p) - 1 for p in train_p)
    else:
        prcfg = PianoRollConfig(vocab=vcfg.to_dict(), frame_steps=vcfg.steps_per_quarter)
        train_r, _ = load_rolls(train_files, prcfg, skips, cfg.progress)
        valid_r, _ = load_rolls(valid_files, prcfg, skips, cfg.progress)
        _need(train_r, "train", data_dir, len(train_files))
        _need(valid_r, "valid", data_dir, len(valid_files))
        kwargs = model_config(cfg.model, n_pitches=prcfg.n_pitches, **cfg.model_kwargs)
        extras["pianoroll"] = prcfg.to_dict()
        front_end, vocab_list = prcfg.to_dict(), None
        train_set = RollPieces(train_r)
        tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                           max_steps=cfg.max_steps, seed=cfg.seed, progress=cfg.progress, device=cfg.device,
                           log_every=10)
        loss_fn, collate = roll_loss, pad_rolls

        def evaluate(m):
            dev = next(m.parameters()).device
            return {"loss": summary(*roll_nll(m, valid_r, device=dev), "frame")["nll_per_frame"]}
        n_train, n_valid, unit = len(train_r), len(valid_r), "frames"
        n_items = sum(len(r) for r in train_r)
    if len(skips):
        print(skips.summary("files"), file=sys.stderr)
    data = {"corpus": str(data_dir), "split_rule": "sha1(relative path)[0] % 10: 0 test, 1 valid, else train",
            "n_train_files": n_train, "n_valid_files": n_valid, f"n_train_{unit}": n_items, "skipped": len(skips)}
    meta = make_meta("music", cfg.model, kwargs, front_end=front_end, vocab=vocab_list, task=cfg.to_dict(),
                     data=data, extras=extras)
    model = get_model(cfg.model, **kwargs)
    trainer = Trainer(model, tcfg, train_set, out_dir, loss_fn, evaluate, collate, bundle=meta)
    if isinstance(loss_fn, CarriedStateLoss):  # the carried TBPTT state is part of the resume state
        trainer.carry_state, trainer.load_carry = loss_fn.get_state, loss_fn.set_state
    res = trainer.fit(resume=resume, stop_after=stop_after)
    res.update(skipped=len(skips), n_train=n_train, n_valid=n_valid, n_params=_models.n_params(model))
    return res


def _need(items, split: str, data_dir, n_files: int) -> None:
    if not items:
        raise UserError(f"{data_dir}: no usable MIDI file in the {split} split ({n_files} listed, all skipped)"
                         if n_files else f"{data_dir}: the {split} split has no MIDI files")


__all__ = ["MusicTrainConfig", "CarriedStateLoss", "roll_loss", "max_note_steps", "train"]
