"""Training, evaluation and prediction for keyword spotting (the shared Trainer does the loop)."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from encoders.audio import AugmentConfig, FeatureConfig, features
from encoders.config import DictConfig
from encoders.io import DecodeError, SkipCounter
from pipelines import bundle as _bundle
from pipelines.cli_common import UserError
from pipelines.plots import classification_report, plot_confusion
from pipelines.registry import get_model
from pipelines.trainer import TrainConfig, Trainer, default_workers, seed_everything

from . import model as _model  # noqa: F401 - registers "kws-lstm"
from .data import (CLIP, PRESETS, DatasetIndex, KWSTrainSet, build_split, collate, eval_set, load_clip, make_labels, noise_bank,
                   scan_dataset, telephone_set, to_float)
from .stream import DetectConfig

KIND = "kws"
SHIPPED = "kws"  # the shipped model inference uses when no --checkpoint is given


@dataclass(frozen=True)
class KWSConfig(DictConfig):
    """Everything ``train`` needs besides the folders.  Defaults reach >= 95 % on the synthesised test voices."""

    words: tuple[str, ...] = tuple(PRESETS["default"])
    model: str = "kws-lstm"
    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.1
    feature_kind: str = "mfcc"
    f_max: float = 7600.0  # top of the mel filter bank (Hz)
    # each engine (synthesised data; recordings count as one) gives the same share of every epoch's clips:
    # the 320 espeak-ng voices would otherwise make 80 % of the data and the model an espeak-ng listener
    balance_engines: bool = True
    # causal mean normalisation of the features over ~1 s (streams too: the running mean is carried state);
    # removes what a voice, engine or microphone keeps constant (issue #9: left-out engine +3.6 points)
    cmn_frames: int = 100
    n_mfcc: int = 40  # cepstral coefficients kept (of 40 mel bands); fewer drop the fine structure (pitch harmonics)
    # floor of the mel power before the log (FeatureConfig.amin): 1e-10 lets digital silence and empty
    # bands (8 kHz audio has nothing above 4 kHz) reach -100 dB, far outside anything heard in training
    log_floor: float = 1e-5  # -50 dB, about white noise at -57 dBFS (issue #9: telephone test 13 % -> 64 %)
    epochs: int = 12
    # a small training set (a leave-one-engine-out rotation, a user's own few hundred clips) still gets this
    # many optimizer steps: the epochs grow to reach it (0: exactly ``epochs``; `train --epochs N` sets 0)
    min_steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    target_frames: int = 8  # the label supervises each of the clip's last K LSTM steps
    stack: int = 3  # 10 ms frames per LSTM step
    silence_percentage: float = 10.0
    unknown_percentage: float = 10.0
    # speaker and channel augmentation (VTLP, rooms, EQ, telephone, babble, clipping): issue #9's recipe
    augment: AugmentConfig = field(default_factory=AugmentConfig.robust)
    seed: int = 0
    max_steps: int | None = None
    holdout_engine: str | None = None  # leave this engine's clips out of training; test on all of them


def feature_stats(waves: torch.Tensor, fc: FeatureConfig, max_clips: int = 2000, seed: int = 0):
    """Per-coefficient mean and std over the frames of (up to ``max_clips``) int16 training clips."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(waves), generator=g)[:max_clips]
    feats = torch.cat([features(to_float(waves[idx[i:i + 256]]), fc) for i in range(0, len(idx), 256)])
    flat = feats.reshape(-1, feats.shape[-1])
    return flat.mean(0), flat.std(0)


@torch.no_grad()
def predict_waves(model: nn.Module, waves: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, samples) -> (N, C) probabilities."""
    model.eval()
    dev = next(model.parameters()).device
    out = [model(waves[i:i + batch_size].to(dev)).float().softmax(-1).cpu() for i in range(0, len(waves), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, model.head.out_features)


def report(model, waves, y, labels, engines: list | None = None) -> dict:
    """Classification report of ``model`` on (M, N) clips; with ``engines`` (M,) also the accuracy over
    each engine's clips (``by_engine``: {engine: {"accuracy", "n"}}; silences and recordings count nowhere)."""
    probs = predict_waves(model, waves)
    pred = probs.argmax(-1)
    rep = classification_report(y.tolist(), pred.tolist(), labels)
    rep["loss"] = float(nn.functional.nll_loss(probs.clamp_min(1e-9).log(), y)) if len(y) else float("nan")
    if engines is not None and any(engines):
        ok = (pred == y).tolist()
        rep["by_engine"] = {}
        for e in sorted({e for e in engines if e}):
            hits = [k for k, g in zip(ok, engines) if g == e]
            rep["by_engine"][e] = {"accuracy": sum(hits) / len(hits), "n": len(hits)}
    return rep


def describe_data(data: str | Path, index, counts: dict, n_noise: int, skipped: int) -> dict:
    """What a bundle records about its training data (the generator's summary when it wrote synth.json)."""
    d = {"path": str(data), "layout": "speech-commands", "split": "list files" if index.has_lists else "speaker hash",
         "clips": counts, "noise_files": n_noise, "skipped": skipped}
    meta = Path(data) / "synth.json"
    if meta.is_file():
        try:
            synth = json.loads(meta.read_text())
            d["generator"] = {"name": "pipelines.kws.synth (" + ", ".join(synth["config"].get("engines", ["espeak", "flite"])) + ")",
                              "voices": synth["summary"]["voices"], "clips": synth["summary"]["clips"],
                              "seed": synth["config"]["seed"]}
        except (ValueError, KeyError, TypeError):
            pass  # a foreign synth.json: the description just lacks the generator
    return d


def train(data: str | Path, out: str | Path, cfg: KWSConfig = KWSConfig(), progress: bool = True,
          resume: bool = True, device: str = "auto", workers: int | None = None) -> dict:
    """Train on a Speech Commands-layout folder; writes ``out/best.pt``, ``last.pt`` (bundles of kind
    ``kws``), ``metrics.jsonl``, ``loss.png``, ``test_report.json`` and ``confusion_test.png``.
    ``resume``: continue from ``out/last.pt`` when it exists.  ``workers``: data-loading processes (see
    :func:`pipelines.trainer.default_workers`; the items are the same whatever the count).  Returns the
    summary dict."""
    t0 = time.time()
    out = Path(out)
    try:
        labels = make_labels(list(cfg.words))
    except ValueError as e:
        raise UserError(str(e)) from None
    index = scan_dataset(data)
    held = None
    if cfg.holdout_engine:  # leave-one-engine-out: that engine's clips (every split) are only tested on
        if cfg.holdout_engine not in index.engines:
            raise UserError(f"{data}: no clips of engine {cfg.holdout_engine!r} (engines here: "
                            f"{', '.join(index.engines) or 'none; the file names carry no engine'})")
        held = index.subset(lambda it: it.engine == cfg.holdout_engine)
        index = index.subset(lambda it: it.engine != cfg.holdout_engine)
    skipped = SkipCounter()
    bank = noise_bank(index.noise_files, skipped)
    pct = dict(silence_percentage=cfg.silence_percentage, unknown_percentage=cfg.unknown_percentage)
    tr = build_split(index, "training", labels, skipped, progress=progress, **pct)
    va = build_split(index, "validation", labels, skipped, progress=progress, **pct)
    te = build_split(index, "testing", labels, skipped, progress=progress, **pct)
    if len(tr.waves) == 0:
        raise UserError(f"{data}: no decodable training clips")
    if int((~tr.is_unknown).sum()) == 0:
        raise UserError(f"{data}: none of the words {', '.join(cfg.words)} has a training clip")
    missing = [w for w in cfg.words if not any(it.word == w for it in index.items)]
    if missing:
        print(f"kws: no clips of {', '.join(missing)} in {data}", file=sys.stderr)
    seed_everything(cfg.seed)
    fc = FeatureConfig(kind=cfg.feature_kind, amin=cfg.log_floor, n_mfcc=cfg.n_mfcc, f_max=cfg.f_max)
    mean, std = feature_stats(tr.waves, fc, seed=cfg.seed)
    kwargs = dict(n_classes=len(labels), features=fc.to_dict(), hidden_size=cfg.hidden_size,
                  num_layers=cfg.num_layers, bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                  stack=cfg.stack, **({"cmn_frames": cfg.cmn_frames} if cfg.cmn_frames else {}))
    model = get_model(cfg.model, **kwargs)
    model.set_normalisation(mean, std)  # buffers: the statistics travel in the state_dict
    train_set = KWSTrainSet(tr, bank, labels, cfg.augment, seed=cfg.seed, n_frames=fc.num_frames(CLIP),
                            n_features=fc.n_features, balance_engines=cfg.balance_engines)
    val_w, val_y = eval_set(va, bank, labels, seed=cfg.seed + 1)
    if len(val_y) == 0:  # no validation voices: fall back to a slice of training clips
        val_w, val_y = eval_set(tr, bank, labels, seed=cfg.seed + 1)
        val_w, val_y = val_w[:500], val_y[:500]

    def evaluate(m):
        r = report(m, val_w, val_y, labels)
        return {"accuracy": r["accuracy"], "loss": r["loss"]}

    def loss_fn(m, batch):
        waves, y, tm, fm, warp = batch
        warp = None if bool((warp == 1).all()) else warp  # VTLP off: the plain (faster) filter bank
        logits = m(waves, tm, fm, last=cfg.target_frames, warp=warp)  # (B, K, C)
        loss = nn.functional.cross_entropy(logits.float().flatten(0, 1), y.repeat_interleave(logits.shape[1]))
        return loss, {"acc": float((logits[:, -1].argmax(-1) == y).float().mean())}

    epochs = cfg.epochs
    if cfg.min_steps:
        per_epoch = -(-len(train_set) // cfg.batch_size)
        epochs = max(epochs, min(-(-cfg.min_steps // per_epoch), 50 * cfg.epochs))
    n_workers = default_workers(workers)
    threads = torch.get_num_threads()
    # the worker gets a core of its own and the model the others: on 2 cores the fastest of three choices (real
    # kws train, steps 10-110, spinning OpenMP waits: 84-87 ms a step; the model on both cores beside a worker
    # 97-110 ms; no worker 94-104 ms; with lstm-media's passive waits the first two tie at 88-89 ms and no
    # worker takes ~135 ms)
    if n_workers and threads > n_workers:
        torch.set_num_threads(threads - n_workers)
    tcfg = TrainConfig(epochs=epochs, num_workers=n_workers, batch_size=cfg.batch_size, lr=cfg.lr,
                       weight_decay=cfg.weight_decay,
                       warmup_steps=cfg.warmup_steps, max_steps=cfg.max_steps, seed=cfg.seed, metric="accuracy",
                       mode="max", progress=progress, log_every=10, device=device)
    counts = {"training": len(tr.waves), "validation": len(va.waves), "testing": len(te.waves)}
    meta = _bundle.make_meta(KIND, cfg.model, kwargs, front_end=fc.to_dict(), labels=labels, task=cfg.to_dict(),
                             data=describe_data(data, index, counts, len(bank), len(skipped)),
                             extras={"detect_config": DetectConfig().to_dict()})
    print(f"kws: {len(train_set)} training items/epoch ({len(tr.waves)} clips decoded, {len(bank)} noises), "
          f"{len(val_y)} validation, labels {labels}", file=sys.stderr)
    try:
        fit = Trainer(model, tcfg, train_set, out, loss_fn, evaluate=evaluate, collate_fn=collate, bundle=meta).fit(
            resume=resume)
    finally:
        torch.set_num_threads(threads)
    best, _ = _bundle.load(out / "best.pt", KIND, device=next(model.parameters()).device)
    te_w, te_y, te_e = eval_set(te, bank, labels, seed=cfg.seed + 2, with_engines=True)
    rep = report(best, te_w, te_y, labels, te_e) if len(te_y) else {"accuracy": None, "n": 0}
    phone = report(best, telephone_set(te_w), te_y, labels) if len(te_y) else {"accuracy": None}
    if len(te_y):
        plot_confusion(np.array(rep["confusion"]), labels, out / "confusion_test.png",
                       title=f"test (held-out voices): {rep['accuracy']:.3f}")
    loeo = None
    if held is not None:
        ho_rep = engine_report(best, held, bank, labels, cfg, skipped, progress)
        loeo = {"engine": cfg.holdout_engine, "accuracy": ho_rep["accuracy"], "n": ho_rep["n"],
                "per_class": ho_rep["per_class"], "trained_on": index.engines}
        plot_confusion(np.array(ho_rep["confusion"]), labels, out / "confusion_holdout_engine.png",
                       title=f"left-out engine {cfg.holdout_engine}: {ho_rep['accuracy']:.3f}")
    summary = {"test_accuracy": rep["accuracy"], "test_n": rep["n"], "test_by_engine": rep.get("by_engine"),
               "test_telephone_accuracy": phone["accuracy"], "holdout_engine": loeo,
               "val_accuracy": fit["best_metric"],
               "train_seconds": round(fit["seconds"], 1), "total_seconds": round(time.time() - t0, 1),
               "steps": fit["step"], "epochs": fit["epoch"], "skipped": len(skipped),
               "train_items_per_epoch": len(train_set), "checkpoint": str(out / "best.pt"),
               "per_class": rep.get("per_class")}
    (out / "test_report.json").write_text(json.dumps({**summary, "confusion": rep.get("confusion"),
                                                      "labels": labels}, indent=1))
    if len(skipped):
        print(skipped.summary("files"), file=sys.stderr)
    return summary


def load(checkpoint: str | Path | None, device: str = "cpu", command: str = "lstm-media kws"):
    """A kws bundle (a file, a shipped model name, or None for the shipped ``kws``) -> (model, bundle)."""
    return _bundle.load(checkpoint, KIND, device=device, default=SHIPPED, command=command)


def engine_report(model, index: DatasetIndex, bank: list, labels: list[str], cfg: KWSConfig,
                  skipped: SkipCounter | None = None, progress: bool = False) -> dict:
    """:func:`report` over every clip of ``index`` (an engine the model never trained on: a left-out
    engine, or the outside engine), keywords all, unknown words and noise-only silences each 10 % of the
    keyword count (the task's proportions, seeded): the leave-one-engine-out protocol."""
    pct = dict(silence_percentage=cfg.silence_percentage, unknown_percentage=cfg.unknown_percentage)
    sp = build_split(index, None, labels, skipped if skipped is not None else SkipCounter(), progress=progress, **pct)
    w, y = eval_set(sp, bank, labels, seed=cfg.seed + 3)
    return report(model, w, y, labels)


def outside_engine_accuracy(checkpoint: str | Path, data: str | Path, device: str = "cpu") -> dict:
    """A trained model on a folder of an engine it never heard (``synth --engines pico``), with the
    leave-one-engine-out protocol (:func:`engine_report`): ``{"accuracy", "n", "per_class"}``."""
    model, b = load(checkpoint, device, "lstm-media kws eval")
    index = scan_dataset(data)
    rep = engine_report(model, index, noise_bank(index.noise_files), b["labels"], KWSConfig.from_dict(b["task"]))
    return {"accuracy": rep["accuracy"], "n": rep["n"], "per_class": rep["per_class"]}


def evaluate_checkpoint(checkpoint: str | Path | None, data: str | Path, out_png: str | Path | None = None,
                        split: str | None = "auto", progress: bool = True, device: str = "cpu",
                        engine: str | None = None, telephone: bool = False) -> dict:
    """Accuracy on a Speech Commands-layout folder.  ``split="auto"``: the testing list when the folder
    has list files (plus generated silences and a 10 % unknown share, as in training), else every file.
    ``engine``: only that engine's clips (synthesised data); ``telephone``: every clip through the 8 kHz
    mu-law channel first.  The report has ``by_engine`` when the clips' engines are known.
    No usable clip -> :class:`UserError` (and nothing written)."""
    model, b = load(checkpoint, device, "lstm-media kws eval")
    labels = b["labels"]
    index = scan_dataset(data)
    if engine is not None:
        if engine not in index.engines:
            raise UserError(f"{data}: no clips of engine {engine!r} (engines here: "
                            f"{', '.join(index.engines) or 'none; the file names carry no engine'})")
        index = index.subset(lambda it: it.engine == engine)
    skipped = SkipCounter()
    bank = noise_bank(index.noise_files, skipped)
    use = ("testing" if index.has_lists else None) if split == "auto" else split
    cfg = KWSConfig.from_dict(b["task"])
    sp = build_split(index, use, labels, skipped, cfg.silence_percentage, cfg.unknown_percentage, progress)
    if len(sp.waves) == 0:
        why = f" ({len(skipped)} files skipped)" if len(skipped) else ""
        raise UserError(f"{data}: no usable clips in the {use or 'whole'} split{why}")
    w, y, engines = eval_set(sp, bank if use is not None else [], labels, seed=cfg.seed + 2,
                             subsample_unknown=use is not None, with_engines=True)
    if telephone:
        w = telephone_set(w)
    rep = report(model, w, y, labels, engines)
    rep.update({"split": use or "all", "engine": engine, "telephone": telephone, "skipped": len(skipped), "skipped_files": skipped.errors[:50],
                "labels": labels, "checkpoint": b["path"], "list_entries_outside": index.list_outside})
    if out_png is not None:
        plot_confusion(np.array(rep["confusion"]), labels, out_png, title=f"{Path(data).name}: {rep['accuracy']:.3f}")
        rep["confusion_png"] = str(out_png)
    if len(skipped):
        print(skipped.summary("files"), file=sys.stderr)
    return rep


def predict_files(checkpoint: str | Path | None, files: list[str | Path], device: str = "cpu") -> list[dict]:
    """Label and score for each clip; undecodable files give ``{"file", "error"}`` (and a stderr line)."""
    model, b = load(checkpoint, device, "lstm-media kws predict")
    labels = b["labels"]
    out = []
    for f in files:
        try:
            w = torch.from_numpy(load_clip(f))
        except DecodeError as e:
            print(str(e), file=sys.stderr)
            out.append({"file": str(f), "error": e.reason})
            continue
        p = predict_waves(model, w.unsqueeze(0))[0]
        k = int(p.argmax())
        out.append({"file": str(f), "label": labels[k], "score": round(float(p[k]), 4)})
    return out


__all__ = ["KWSConfig", "KIND", "SHIPPED", "train", "load", "evaluate_checkpoint", "predict_files", "feature_stats",
           "predict_waves", "report", "describe_data"]
