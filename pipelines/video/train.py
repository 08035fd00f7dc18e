"""Training wiring: data -> registered model -> shared :class:`pipelines.trainer.Trainer`.

Every checkpoint is a bundle (:mod:`pipelines.bundle`) of kind "video-classify" (labels = class names)
or "video-caption" (vocab = caption vocabulary); ``front_end`` is the :class:`VideoFrontEndConfig`,
``task`` the :class:`VideoTrainConfig` of the run.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from encoders.video import VideoFrontEndConfig
from pipelines import bundle as _bundle
from pipelines.registry import get_model
from pipelines.trainer import Trainer, TrainConfig, seed_everything

from . import models  # noqa: F401 - registers the video models
from .data import CaptionDataset, ClassifyDataset, ClipSet, Vocab, collate_captions, load_clipset
from .metrics import caption_scores
from encoders.config import DictConfig

TASKS = ("classify", "caption", "predict")

# The captioner's recipe: ``train --task caption``'s defaults, the demo's and the shipped model's.  Measured
# on clips rendered with settings the training never used (``synth --style unseen``), the captions failed
# on the shape word first (a 32x32 frame leaves a small object a few pixels wide) and on the action word
# next (shorter paths, slighter growth): 64x64 frames through a four-block CNN (one more 2x2 pooling, so
# it costs ~2x the 32x32 one, not 4x) and slower actions made by stretching part of a clip
# (data.zoom_augment's speed change).  Zooming the whole clip (``zoom_augment``) made shapes harder to learn
# and is left off.
# Measured next on unseen clips of seed 4242 (the shipped figures are on seed 777): the shape word failed
# on objects of unseen sizes (squares taken for circles).  The CNN's global *mean* of every channel grows
# with the object's area, a cue that tells a square from a circle of the same radius only at the sizes
# of the training data; without it (``pool_mean`` False: the channel max, size-free, and the coarse grid)
# shape errors on the unseen clips fell from 19 to 8 of 180.  The action word failed next (a short move
# taken for slight growth and back); rescaling the training clips (``scale_augment``, a nearer or farther
# view that never cuts the object) cut those errors but made shapes slower to learn: in 30 epochs the
# validation exact match was still rising (0.89 at the end).  Trained 60 epochs, the rescaled recipe gave
# 0.944 exact on the unseen clips of seed 4242 against 0.883 for 60 epochs without it.
CAPTION_RECIPE = {"size": 64, "cnn_channels": (8, 16, 32, 64), "pool_mean": False, "speed_augment": 0.5,
                  "bow_weight": 0.2, "epochs": 60, "scale_augment": (0.8, 1.25, 1.0)}


def caption_frame_cnn(channels=None, recipe: dict = CAPTION_RECIPE) -> dict:
    """The captioner's ``frame_cnn`` config: the recipe's pooling, and ``channels`` (None: the CNN's
    default widths)."""
    return {**({"channels": list(channels)} if channels else {}), "pool_mean": recipe["pool_mean"]}


def caption_augmentation(recipe: dict = CAPTION_RECIPE) -> dict:
    """The recipe's augmentation as :class:`VideoTrainConfig` fields (speed, scale, BoW weight)."""
    out = {"speed_augment": recipe["speed_augment"], "bow_weight": recipe["bow_weight"]}
    if recipe.get("scale_augment"):
        lo, hi, p = recipe["scale_augment"]
        out.update(scale_augment=(lo, hi), scale_p=p)
    return out


KINDS = {"classify": "video-classify", "caption": "video-caption", "predict": "video-predict"}


@dataclass(frozen=True)
class VideoTrainConfig(DictConfig):
    """One training run.  ``model`` is a registry name ("video-cnn-lstm", "video-convlstm", "video-frame"
    for classify; "video-caption" for caption); ``model_kwargs`` go to its builder."""

    task: str = "classify"
    model: str = "video-cnn-lstm"
    model_kwargs: dict = field(default_factory=dict)
    frontend: dict = field(default_factory=dict)
    epochs: int = 25
    batch_size: int = 16  # small batches: more optimizer steps per epoch is what a from-scratch CNN needs here
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = True
    appearance_augment: bool = False  # caption: colour, size, speed and noise changes (data.appearance_augment)
    zoom_augment: tuple | None = None  # caption: zoom scale range, e.g. (0.65, 1.35) (data.zoom_augment); None: off
    scale_augment: tuple | None = None  # caption: per-clip scale range, e.g. (0.8, 1.25) (data.scale_augment); None: off
    scale_p: float = 1.0  # caption, with scale_augment: the share of the training clips rescaled
    speed_augment: float = 0.0  # caption, with zoom_augment: probability of a slower action (a stretched sub-window)
    bow_weight: float = 0.2  # captioning: weight of the bag-of-words auxiliary loss (per word of the vocabulary)
    target: float | None = None  # stop once the validation metric reaches this
    init_from: str | None = None  # checkpoint whose frame CNN initialises this model's (transfer)
    max_steps: int | None = None
    progress: bool = True
    device: str = "auto"  # where training runs ("auto": CUDA when available)
    frame_encoder: str = "small-cnn"  # or any torchvision classifier name (resnet18, mobilenet_v3_small, ...)
    weights: str | None = None  # local state dict of that torchvision classifier (never downloaded)
    freeze_encoder: bool = False  # encode every clip once, cache the features, train only the LSTM
    context: int = 10  # predict: K frames seen
    horizon: int = 10  # predict: N frames predicted



def caption_config(frontend: dict, epochs: int = CAPTION_RECIPE["epochs"], recipe_frames: bool = True,
                   **kw) -> VideoTrainConfig:
    """The captioner's recipe (:data:`CAPTION_RECIPE`) as a config: ``frontend`` at the recipe's frame
    size with its CNN (``recipe_frames`` False: the front end's own size and the CNN's defaults, for tiny
    test runs), its augmentation and BoW weight; ``kw``: any other field."""
    r = CAPTION_RECIPE
    frames = {"frontend": {**frontend, "size": [r["size"]] * 2},
              "model_kwargs": {"frame_cnn": caption_frame_cnn(r["cnn_channels"], r)}} if recipe_frames else \
        {"frontend": frontend}
    return VideoTrainConfig(task="caption", model="video-caption", epochs=epochs, **frames, **caption_augmentation(r),
                            **kw)


def _as_input(x: torch.Tensor, fe: VideoFrontEndConfig) -> torch.Tensor:
    """Stored uint8 clips (B, T, H, W, 3) -> normalised frames; cached frame features (B, T, F) as they are."""
    from encoders.video import uint8_to_input

    return uint8_to_input(x, fe) if x.dtype == torch.uint8 else x


@torch.no_grad()
def predict_logits(model, frames_u8: torch.Tensor, fe: VideoFrontEndConfig, batch_size: int = 64) -> torch.Tensor:
    """uint8 clips (N, T, H, W, 3) (or cached frame features (N, T, F)) -> logits (N, C), in eval mode."""
    model.eval()
    dev = next(model.parameters()).device
    outs = [model(_as_input(frames_u8[i:i + batch_size], fe).to(dev)).float().cpu()
            for i in range(0, len(frames_u8), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, 0)


@torch.no_grad()
def generate_captions(model, frames_u8: torch.Tensor, fe: VideoFrontEndConfig, vocab: Vocab, beam_size: int = 1,
                      max_len: int = 12, batch_size: int = 64) -> list[str]:
    """uint8 clips (N, T, H, W, 3) (or cached frame features (N, T, F)) -> one sentence per clip."""
    model.eval()
    dev = next(model.parameters()).device
    out: list[str] = []
    for i in range(0, len(frames_u8), batch_size):
        ids = model.generate(_as_input(frames_u8[i:i + batch_size], fe).to(dev), vocab.bos, vocab.eos, max_len,
                             beam_size)
        out += [vocab.decode(s) for s in ids]
    return out


def encoder_kwargs(cfg: VideoTrainConfig) -> dict:
    """The model-builder arguments that choose and freeze the frame encoder (none for the defaults,
    so bundles of the small CNN keep their old model_config)."""
    from encoders.video import SMALL_CNN

    out = {}
    if cfg.frame_encoder != SMALL_CNN:
        out["frame_encoder"] = cfg.frame_encoder
        out["feature_norm"] = True
    if cfg.freeze_encoder:
        out["freeze_encoder"] = True
    return out


def prepare_encoder(model: torch.nn.Module, cfg: VideoTrainConfig) -> None:
    """Load ``cfg.weights`` into a torchvision frame encoder, or say on stderr that it is random."""
    from encoders.video import SMALL_CNN

    if cfg.frame_encoder == SMALL_CNN:
        if cfg.weights:
            raise ValueError("--weights needs a torchvision --frame-encoder (the small CNN trains from scratch)")
        return
    enc = model._encoder()
    if cfg.weights:
        enc.load_weights(cfg.weights)
        print(f"video: frame encoder {cfg.frame_encoder} initialised from {cfg.weights}", file=sys.stderr)
    else:
        print(f"video: frame encoder {cfg.frame_encoder} is randomly initialised (no --weights given; nothing is "
              "ever downloaded)", file=sys.stderr)


def feature_cache_key(encoder_name: str, encoder: torch.nn.Module, fe: VideoFrontEndConfig, clips: ClipSet,
                      flip: bool) -> str:
    """What cached frame features depend on: encoder name and weights, front end, the clips (paths,
    sizes, modification times) and whether the frames were flipped left-right."""
    import hashlib

    from encoders.video import weights_hash

    from .data import _cache_key

    text = json.dumps({"encoder": encoder_name, "weights": weights_hash(encoder), "front_end": fe.to_dict(),
                       "clips": _cache_key(Path(clips.root), clips.paths, fe), "n": len(clips), "flip": flip},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def frozen_features(model: torch.nn.Module, clips: ClipSet, fe: VideoFrontEndConfig, encoder_name: str,
                    split: str, flip: bool = False, device: str | torch.device = "cpu",
                    progress: bool = False) -> torch.Tensor:
    """Frame features (N, T, F) of ``clips`` by ``model``'s frozen encoder, read from / written to
    ``<data>/.cache/features-*.pt`` (key: :func:`feature_cache_key`)."""
    from encoders.video import cached_features, uint8_to_input

    enc = model._encoder()
    key = feature_cache_key(encoder_name, enc, fe, clips, flip)
    path = Path(clips.root) / ".cache" / f"features-{split}-{encoder_name}-{key}.pt"
    dev = torch.device(device)
    was = next(enc.parameters()).device
    enc.to(dev)

    def prepare(x):
        x = x.flip(-2) if flip else x  # (B, T, H, W, 3): W is dim -2
        return uint8_to_input(x, fe).to(dev)

    feats, hit = cached_features(enc, clips.frames, path, key, batch_size=32, prepare=prepare, progress=progress)
    enc.to(was)
    print(f"video: {split}{' (flipped)' if flip else ''} features {tuple(feats.shape)} "
          f"{'read from' if hit else 'cached in'} {path}", file=sys.stderr)
    return feats


def video_workers(workers: int | None = None) -> int:
    """Data-loading processes for classify/caption training: ``workers`` when given, else none.  The clips
    are decoded once and kept in memory; what is left per batch (flips, speed change, rescaling,
    normalisation: ~2.3 ms for classify, ~9 for caption, one thread) costs less than a worker's hand-over.
    Measured on 2 cores (``benchmarks/results/video-cpu.json``, loop steps/s / model alone's): at 2 threads
    a niced worker interrupted the model's threads (caption 0.79 of the model alone against 0.92 without,
    classify 0.88 against 0.93); at 1 thread, with the other core free for it, it gained nothing either
    (classify 0.90, caption 0.95, against 0.94 and 0.94 without)."""
    return max(int(workers), 0) if workers is not None else 0


def train(data: str | Path, out: str | Path, cfg: VideoTrainConfig, resume: bool = True,
          workers: int | None = None) -> dict:
    """Train ``cfg.task`` on ``data`` (its train split; val split for model selection) into ``out``.
    ``workers``: data-loading processes for classify/caption (None: :func:`video_workers`; the items are
    the same whatever the count)."""
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    if cfg.epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.task == "predict":
        from .predict import train_predict

        return train_predict(data, out, cfg, resume)
    out = Path(out)
    fe = VideoFrontEndConfig.from_dict(cfg.frontend)
    train_set = load_clipset(data, "train", fe, progress=cfg.progress)
    classes = train_set.classes
    val_set = load_clipset(data, "val", fe, classes=classes, progress=cfg.progress)
    if len(val_set) == 0:  # e.g. UCF101 lists: hold out every 10th training clip
        idx = torch.arange(len(train_set))
        va, tr = idx[idx % 10 == 0], idx[idx % 10 != 0]
        val_set = _subset(train_set, va)
        train_set = _subset(train_set, tr)
    if len(train_set) == 0:
        raise ValueError(f"{data}: no decodable training clips in the train split")
    print(f"video: {len(train_set)} train clips, {len(val_set)} val clips"
          f"{f', skipped {len(train_set.skipped) + len(val_set.skipped)} bad files' if train_set.skipped or val_set.skipped else ''}",
          file=sys.stderr)
    seed_everything(cfg.seed)
    tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     num_workers=video_workers(workers), worker_nice=19,
                     seed=cfg.seed, warmup_steps=20, max_steps=cfg.max_steps, progress=cfg.progress, log_every=10,
                     metric="accuracy" if cfg.task == "classify" else "exact_match", mode="max",
                     target=cfg.target, device=cfg.device)
    data_desc = {"root": str(data), "train_clips": len(train_set), "val_clips": len(val_set),
                 "skipped": len(train_set.skipped) + len(val_set.skipped)}
    enc_desc = "" if cfg.frame_encoder == "small-cnn" else (
        f", {cfg.frame_encoder} frames{' (frozen)' if cfg.freeze_encoder else ''}")
    if cfg.task == "classify":
        kwargs = {"num_classes": len(classes), **encoder_kwargs(cfg), **cfg.model_kwargs}
        meta = _bundle.make_meta(KINDS["classify"], cfg.model, kwargs, front_end=fe.to_dict(), labels=classes,
                                 task=cfg.to_dict(), data=data_desc,
                                 extras={"description": "labels a video clip with one of "
                                                        f"{len(classes)} actions ({cfg.model}{enc_desc})"})
        model = get_model(cfg.model, **kwargs)
    else:
        vocab = Vocab.build(train_set.captions)
        kwargs = {"vocab_size": len(vocab), **encoder_kwargs(cfg), **cfg.model_kwargs}
        meta = _bundle.make_meta(KINDS["caption"], cfg.model, kwargs, front_end=fe.to_dict(),
                                 vocab=vocab.to_list(), task=cfg.to_dict(), data=data_desc,
                                 extras={"description": "describes a video clip in one sentence "
                                                        f"({len(vocab)}-word vocabulary{enc_desc})"})
        model = get_model(cfg.model, **kwargs)
    prepare_encoder(model, cfg)
    if cfg.init_from and not (resume and (out / "last.pt").exists()):
        copied = init_frame_cnn(model, cfg.init_from)
        print(f"video: frame CNN initialised from {cfg.init_from} ({copied} tensors)", file=sys.stderr)
    train_feats = val_input = None
    if cfg.freeze_encoder:
        if resume and (out / "last.pt").exists():  # the cache is keyed by the weights: use the saved ones
            model.load_state_dict(_bundle.read(out / "last.pt")[0]["state_dict"])
        from pipelines.trainer import resolve_device

        dev = resolve_device(cfg.device)
        flip = cfg.augment and cfg.task in ("classify", "caption")
        train_feats = (frozen_features(model, train_set, fe, cfg.frame_encoder, "train", False, dev, cfg.progress),
                       frozen_features(model, train_set, fe, cfg.frame_encoder, "train", True, dev, cfg.progress)
                       if flip else None)
        val_input = frozen_features(model, val_set, fe, cfg.frame_encoder, "val", False, dev, cfg.progress)
    val_x = val_input if val_input is not None else val_set.frames
    if cfg.task == "classify":
        ds = ClassifyDataset(train_set, fe, augment=cfg.augment, seed=cfg.seed, features=train_feats)

        def loss_fn(m, batch):
            x, y = batch
            logits = m(x)
            return F.cross_entropy(logits, y), {"acc": float((logits.argmax(-1) == y).float().mean())}

        def evaluate(m):
            logits = predict_logits(m, val_x, fe)
            acc = float((logits.argmax(-1) == val_set.labels).float().mean()) if len(val_set) else 0.0
            return {"accuracy": acc, "loss": float(F.cross_entropy(logits, val_set.labels)) if len(val_set) else 0.0}

        trainer = Trainer(model, tc, ds, out, loss_fn, evaluate, bundle=meta)
    else:
        ds = CaptionDataset(train_set, vocab, fe, augment=cfg.augment, seed=cfg.seed, features=train_feats,
                            appearance=cfg.appearance_augment, zoom=cfg.zoom_augment, speed_p=cfg.speed_augment,
                            scale=cfg.scale_augment, scale_p=cfg.scale_p)
        if len(ds) == 0:
            raise ValueError(f"{data}: no training captions (captions.csv missing or empty)")

        def loss_fn(m, batch):
            x, tgt_in, tgt_out = batch
            logp, bow, frame_bow = m(x, tgt_in, with_bow=True)
            nll = F.nll_loss(logp.flatten(0, 1), tgt_out.flatten(), ignore_index=Vocab.pad)
            if bow is None:
                return nll
            # multi-hot of the caption's words (specials excluded: they are in every caption)
            target = torch.zeros_like(bow).scatter_(1, tgt_out, 1.0)
            target[:, :len(Vocab.SPECIALS)] = 0
            aux = F.binary_cross_entropy_with_logits(bow, target)
            aux_f = F.binary_cross_entropy_with_logits(frame_bow, target.unsqueeze(1).expand_as(frame_bow))
            V = bow.shape[1]  # summed over the vocabulary, averaged over clips (and frames)
            loss = nll + cfg.bow_weight * V * (aux + aux_f)
            return loss, {"nll": float(nll.detach()), "bow": float(aux.detach()), "frame_bow": float(aux_f.detach())}

        def evaluate(m):
            keep = [i for i, c in enumerate(val_set.captions) if c]
            if not keep:
                return {"exact_match": 0.0}
            preds = generate_captions(m, val_x[keep], fe, vocab)
            s = caption_scores({i: p for i, p in zip(keep, preds)}, {i: val_set.captions[i] for i in keep},
                               meteor=False)
            return {"exact_match": s["exact_match"], "bleu4": s["bleu4"]}

        trainer = Trainer(model, tc, ds, out, loss_fn, evaluate, collate_fn=collate_captions, bundle=meta)
    result = trainer.fit(resume=resume)
    (out / "train_result.json").write_text(json.dumps(result, indent=2))
    return result


def _frame_cnn(model: torch.nn.Module):
    from encoders.video import FrameCNN

    return next((m for m in model.modules() if isinstance(m, FrameCNN)), None)


def init_frame_cnn(model: torch.nn.Module, checkpoint: str | Path) -> int:
    """Copy the frame CNN weights of another video checkpoint (a file or shipped model name, e.g. the
    trained classifier) into ``model``'s frame CNN; the configs must match.  Returns the number of
    tensors copied."""
    src, _ = _bundle.load(checkpoint, tuple(KINDS.values()), command="lstm-media video train --init-from")
    a, b = _frame_cnn(src), _frame_cnn(model)
    if a is None or b is None:
        raise ValueError(f"{checkpoint}: no frame CNN to initialise from")
    if a.cfg != b.cfg:
        raise ValueError(f"{checkpoint}: frame CNN config {a.cfg} differs from {b.cfg}")
    b.load_state_dict(a.state_dict())
    return len(a.state_dict())


def _subset(cs: ClipSet, idx: torch.Tensor) -> ClipSet:
    il = idx.tolist()
    return ClipSet(cs.root, [cs.paths[i] for i in il], cs.frames[idx], cs.labels[idx], [cs.captions[i] for i in il],
                   cs.classes, cs.skipped)


__all__ = ["TASKS", "KINDS", "CAPTION_RECIPE", "caption_augmentation", "caption_config", "caption_frame_cnn", "VideoTrainConfig", "predict_logits", "generate_captions", "train", "video_workers", "init_frame_cnn",
           "encoder_kwargs", "prepare_encoder", "feature_cache_key", "frozen_features"]
