"""Custom keywords from a few recordings: fine-tune a kws bundle with new words added as classes.

The few recordings of each new word are trimmed, centred, repeated and augmented heavily (speaker and
channel augmentation at high rates, wider speed and vocal-tract warps); the old classes keep training on
their own (synthesised) data, so they keep their accuracy.  The result is an ordinary ``kws`` bundle:
``predict``, ``eval`` and ``detect`` use it as they use any other.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.audio import AugmentConfig
from encoders.config import DictConfig
from encoders.io import DecodeError, SkipCounter
from pipelines import bundle as _bundle
from pipelines.cli_common import UserError, write_text_atomic
from pipelines.registry import get_model
from pipelines.trainer import TrainConfig, Trainer, seed_everything

from .data import (CLIP, PCM, UNKNOWN, KWSTrainSet, TaskSplit, build_split, collate, eval_set, load_clip,
                   noise_bank, scan_dataset)
from .train import KIND, KWSConfig, load, report


@dataclass(frozen=True)
class EnrollConfig(DictConfig):
    """How :func:`enroll` fine-tunes.  Defaults: ~2 minutes on 2 CPU cores."""

    copies: int = 0  # training items per new word and epoch (0: as many as an average old word has)
    old_per_class: int = 300  # clips per old class (and of unknown words) kept for each epoch's pool
    epochs: int = 4
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    seed: int = 0
    augment: AugmentConfig = AugmentConfig.robust()  # for the old classes' clips

    @staticmethod
    def heavy() -> AugmentConfig:
        """The augmentation of the few new recordings: every channel effect often, wide warps."""
        return replace(AugmentConfig.robust(), vtlp=(0.8, 1.25), speed=(0.8, 1.25), reverb_prob=0.5, eq_prob=0.8,
                       phone_prob=0.25, babble_prob=0.3, clip_prob=0.1, snr_db=(0.0, 30.0))


def trim_recording(wave: np.ndarray, threshold: float = 0.05) -> np.ndarray:
    """Keep the spoken part of a recording (frames above ``threshold`` x the loudest 10 ms frame, plus
    50 ms each side) and centre it in one second; a longer word keeps its middle second."""
    hop = 160
    n = len(wave) // hop * hop
    if n == 0:
        return np.pad(wave, (0, CLIP - len(wave)))
    energy = np.sqrt((wave[:n].reshape(-1, hop) ** 2).mean(1))
    on = np.flatnonzero(energy > threshold * energy.max())
    a, b = max(on[0] * hop - 800, 0), min((on[-1] + 1) * hop + 800, len(wave))
    w = wave[a:b]
    if len(w) > CLIP:
        s = (len(w) - CLIP) // 2
        return w[s:s + CLIP]
    left = (CLIP - len(w)) // 2
    return np.pad(w, (left, CLIP - len(w) - left)).astype(np.float32)


class _Mixed(torch.utils.data.Dataset):
    """Old-class items (their own augmentation) followed by new-word items (heavy augmentation)."""

    def __init__(self, old: KWSTrainSet, new: KWSTrainSet):
        self.old, self.new = old, new

    def set_epoch(self, epoch: int) -> None:
        self.old.set_epoch(epoch)
        self.new.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.old) + len(self.new)

    def __getitem__(self, i: int):
        return self.old[i] if i < len(self.old) else self.new[i - len(self.old)]


def _subsample(split: TaskSplit, per_class: int, seed: int) -> TaskSplit:
    """At most ``per_class`` clips of each label (seeded), so fine-tuning stays short."""
    g = np.random.default_rng(seed)
    keep = []
    for c in split.labels.unique().tolist():
        idx = torch.nonzero(split.labels == c).flatten().numpy()
        keep += sorted(g.permutation(idx)[:per_class].tolist())
    keep = torch.tensor(sorted(keep), dtype=torch.long)
    unk = split.is_unknown[keep]
    n_kw = int((~unk).sum())
    return TaskSplit(split.waves[keep], split.labels[keep], unk, n_silence=max(n_kw // 10, 1),
                     n_unknown=int(unk.sum()), engines=[split.engines[i] for i in keep.tolist()] if split.engines else [])


def enroll(words: dict[str, list[str | Path]], data: str | Path, out: str | Path, checkpoint=None,
           cfg: EnrollConfig = EnrollConfig(), progress: bool = True, resume: bool = True,
           device: str = "auto") -> dict:
    """Add ``words`` ({word: [recordings]}) to the kws bundle ``checkpoint`` (None: the shipped ``kws``) and
    fine-tune on the recordings plus the old classes' clips from ``data`` (a Speech Commands-layout
    folder; clips of the new words in it are left out).  Writes ``out/best.pt`` (a kws bundle) and
    ``out/enroll_report.json``; returns the summary."""
    t0 = time.time()
    out = Path(out)
    base, b = load(checkpoint, "cpu", "lstm-media kws enroll")
    old_labels = list(b["labels"])
    clash = [w for w in words if w in old_labels]
    if clash:
        raise UserError(f"{', '.join(clash)} already a class of {b['path']}; enroll adds new words only")
    labels = old_labels + list(words)
    skipped = SkipCounter()
    rec, rec_y, rec_files = [], [], {}
    for k, (w, files) in enumerate(words.items()):
        ok = []
        for f in files:
            try:
                rec.append(trim_recording(load_clip(f, length=None)))
            except DecodeError as e:
                print(str(e), file=sys.stderr)
                skipped.add(e)
                continue
            rec_y.append(len(old_labels) + k)
            ok.append(str(f))
        if not ok:
            raise UserError(f"--word {w}: none of its recordings could be read")
        rec_files[w] = ok
    index = scan_dataset(data).subset(lambda it: it.word not in words)
    bank = noise_bank(index.noise_files, skipped)
    kcfg = KWSConfig.from_dict(b["task"])
    old = build_split(index, "training", labels, skipped, progress=progress)
    if int((~old.is_unknown).sum()) == 0:
        raise UserError(f"{data}: no training clips of the model's words ({', '.join(kcfg.words)})")
    old = _subsample(old, cfg.old_per_class, cfg.seed)
    per_word = cfg.copies or max(int((~old.is_unknown).sum()) // max(len(kcfg.words), 1), 1)
    waves, ys = [], []
    for k in range(len(words)):
        mine = [r for r, y in zip(rec, rec_y) if y == len(old_labels) + k]
        reps = int(np.ceil(per_word / len(mine)))
        waves += (mine * reps)[:per_word]
        ys += [len(old_labels) + k] * per_word
    pcm = torch.from_numpy(np.round(np.clip(np.stack(waves), -1, 1) * PCM).astype(np.int16))
    new = TaskSplit(pcm, torch.tensor(ys), torch.zeros(len(ys), dtype=torch.bool), n_silence=0, n_unknown=0)
    seed_everything(cfg.seed)
    kwargs = {**b["model_config"], "n_classes": len(labels)}
    model = get_model(b["model"], **kwargs)
    state = {k: v.float() if v.is_floating_point() else v for k, v in base.state_dict().items()}
    head_w, head_b = state.pop("head.weight"), state.pop("head.bias")
    model.load_state_dict(state, strict=False)
    with torch.no_grad():  # old rows as they were; new rows start from the unknown class's row
        model.head.weight[: len(old_labels)] = head_w
        model.head.bias[: len(old_labels)] = head_b
        u = old_labels.index(UNKNOWN)
        model.head.weight[len(old_labels):] = head_w[u]
        model.head.bias[len(old_labels):] = head_b[u]
    fc = model.feature_config
    nf = fc.num_frames(CLIP)
    old_set = KWSTrainSet(old, bank, labels, cfg.augment, seed=cfg.seed, n_frames=nf, n_features=fc.n_features)
    new_set = KWSTrainSet(new, bank, labels, EnrollConfig.heavy(), seed=cfg.seed + 1, n_frames=nf,
                          n_features=fc.n_features)
    train_set = _Mixed(old_set, new_set)
    va = build_split(index, "validation", labels, skipped, progress=progress)
    val_w, val_y = eval_set(va, bank, labels, seed=cfg.seed + 1)
    # the recordings themselves (clean) join validation: the new classes must not be forgotten either
    val_w = torch.cat([val_w, torch.from_numpy(np.stack(rec))])
    val_y = torch.cat([val_y, torch.tensor(rec_y)])

    def evaluate(m):
        r = report(m, val_w, val_y, labels)
        return {"accuracy": r["accuracy"], "loss": r["loss"]}

    def loss_fn(m, batch):
        x, y, tm, fm, warp = batch
        logits = m(x, tm, fm, last=kcfg.target_frames, warp=None if bool((warp == 1).all()) else warp)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y.repeat_interleave(logits.shape[1]))
        return loss, {"acc": float((logits[:, -1].argmax(-1) == y).float().mean())}

    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                       warmup_steps=cfg.warmup_steps, seed=cfg.seed, metric="accuracy", mode="max",
                       progress=progress, log_every=10, device=device)
    task = replace(kcfg, words=tuple(labels[2:])).to_dict()  # eval/enroll read it back as a KWSConfig
    meta = _bundle.make_meta(KIND, b["model"], kwargs, front_end=b["front_end"], labels=labels, task=task,
                             data={"base": b["path"], "base_data": b.get("data"), "old_classes_from": str(data),
                                   "recordings": rec_files},
                             extras={**{k: v for k, v in b["extras"].items() if k not in ("description", "recipe")},
                                     "enrolled": list(words), "enroll_config": cfg.to_dict()})
    print(f"kws enroll: {', '.join(f'{w} ({len(f)} recordings)' for w, f in rec_files.items())}; "
          f"{len(train_set)} items/epoch, labels {labels}", file=sys.stderr)
    fit = Trainer(model, tcfg, train_set, out, loss_fn, evaluate=evaluate, collate_fn=collate, bundle=meta).fit(
        resume=resume)
    best, _ = _bundle.load(out / "best.pt", KIND, device="cpu")
    te = build_split(index, "testing", labels, skipped, progress=progress)
    te_w, te_y = eval_set(te, bank, labels, seed=kcfg.seed + 2)
    after = report(best, te_w, te_y, labels)
    old_y = te_y.clone()
    before = report(base, te_w, old_y, old_labels)
    summary = {"words": rec_files, "labels": labels, "old_classes_test_accuracy_before": before["accuracy"],
               "old_classes_test_accuracy_after": after["accuracy"], "test_n": after["n"],
               "val_accuracy": fit["best_metric"], "train_seconds": round(fit["seconds"], 1),
               "total_seconds": round(time.time() - t0, 1), "skipped": len(skipped),
               "checkpoint": str(out / "best.pt")}
    write_text_atomic(out / "enroll_report.json", json.dumps(summary, indent=1))
    return summary


__all__ = ["EnrollConfig", "enroll", "trim_recording"]
