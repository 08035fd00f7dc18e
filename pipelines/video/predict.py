"""Future-frame prediction: a ConvLSTM encoder–forecaster sees K frames and predicts the next N.

Bundles of kind "video-predict" (registry model "video-predict-convlstm").  Clips come from any clip
folder the classifier reads (labels are ignored); each clip gives its centred window of K + N
consecutive frames (a clip shorter than that repeats its last frame), resized to size x size,
pixels in [0, 1], gray (mean of RGB) when ``channels`` is 1.  Scores (:func:`evaluate_predict`): MSE
and SSIM over the predicted horizon against the copy-last-frame and mean-frame baselines.
:func:`predict_clips` writes, per clip, a side-by-side GIF or MP4 (input | truth | prediction) and
a PNG strip (top: the K inputs then the N true frames; bottom: the N predictions).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from encoders.io import SkipCounter, atomic_write
from encoders.video import VideoFrontEndConfig
from pipelines import bundle as _bundle
from pipelines.cli_common import UserError
from pipelines.registry import get_model
from pipelines.trainer import Trainer, TrainConfig, seed_everything

from .data import ClipSet, _augment_choice, decode_many, load_clipset
from .metrics import prediction_scores

KIND = "video-predict"
MODEL = "video-predict-convlstm"


def predict_front_end(context: int, horizon: int, size: int) -> VideoFrontEndConfig:
    """K + N consecutive frames (the centred window: "stride" sampling with stride 1), size x size."""
    return VideoFrontEndConfig(num_frames=context + horizon, size=(size, size), sampling="stride", stride=1,
                               mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def to_unit(frames_u8: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float (..., T, C, H, W) in [0, 1]; C = 1 is the mean of RGB."""
    x = frames_u8.movedim(-1, -3).float().div_(255.0)
    return x.mean(-3, keepdim=True) if channels == 1 else x


def to_u8(frames: torch.Tensor) -> np.ndarray:
    """float (T, C, H, W) in [0, 1] -> uint8 (T, H, W, 3) (gray repeated to RGB)."""
    x = frames.clamp(0, 1).mul(255).round().byte()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


class PredictDataset(Dataset):
    """Clips (T=K+N, C, H, W) in [0, 1]; with ``augment`` each is flipped left-right and/or played
    backwards (each with probability 1/2, seeded per epoch and index): motion stays motion."""

    def __init__(self, clips: ClipSet, channels: int, augment: bool = True, seed: int = 0):
        self.frames, self.channels, self.augment, self.seed, self.epoch = clips.frames, channels, augment, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int):
        x = self.frames[i]
        if self.augment:
            flip, rev = _augment_choice(self.seed, self.epoch, i)
            x = x.flip(-2) if flip else x
            x = x.flip(0) if rev else x
        return to_unit(x, self.channels)


@torch.no_grad()
def predict_frames(model, frames_u8: torch.Tensor, context: int, horizon: int, channels: int,
                   batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 clips (B, >= K+N, H, W, 3) -> (context (B, K, C, H, W), truth (B, N, ...), prediction
    (B, N, ...) clamped to [0, 1]), all on the CPU."""
    model.eval()
    dev = next(model.parameters()).device
    ctx, tru, pre = [], [], []
    for i in range(0, len(frames_u8), batch_size):
        x = to_unit(frames_u8[i:i + batch_size], channels)
        c, t = x[:, :context], x[:, context:context + horizon]
        pre.append(model(c.to(dev), horizon).float().clamp(0, 1).cpu())
        ctx.append(c)
        tru.append(t)
    return torch.cat(ctx), torch.cat(tru), torch.cat(pre)


def guess_channels(frames_u8: torch.Tensor) -> int:
    """1 when every clip is gray (RGB channels equal up to codec rounding), else 3."""
    if len(frames_u8) == 0:
        return 3
    x = frames_u8[:64].short()
    spread = (x.amax(-1) - x.amin(-1)).float().mean()
    return 1 if float(spread) < 2.0 else 3


def _check_window(fe: VideoFrontEndConfig, context: int, horizon: int) -> None:
    if fe.num_frames < context + horizon:
        raise UserError(f"the checkpoint's clips hold {fe.num_frames} frames; --context {context} + --horizon "
                        f"{horizon} is more")


def train_predict(data: str | Path, out: str | Path, cfg, resume: bool = True) -> dict:
    """Train the encoder–forecaster on ``data``'s train split (val split selects best.pt by MSE)."""
    out = Path(out)
    K, N = cfg.context, cfg.horizon
    size = int(cfg.frontend.get("size", [64, 64])[0]) if cfg.frontend else 64
    fe = predict_front_end(K, N, size)
    train_set = load_clipset(data, "train", fe, progress=cfg.progress)
    kwargs = {"channels": cfg.model_kwargs.get("channels") or guess_channels(train_set.frames), "patch": 4,
              "hidden": [32, 32], **{k: v for k, v in cfg.model_kwargs.items() if k != "channels"}}
    val_set = load_clipset(data, "val", fe, classes=train_set.classes, progress=cfg.progress)
    if len(val_set) == 0 and len(train_set) > 1:
        idx = torch.arange(len(train_set))
        val_set = ClipSet(train_set.root, [train_set.paths[i] for i in idx[idx % 10 == 0].tolist()],
                          train_set.frames[idx % 10 == 0], train_set.labels[idx % 10 == 0], [], [], [])
        train_set = ClipSet(train_set.root, [train_set.paths[i] for i in idx[idx % 10 != 0].tolist()],
                            train_set.frames[idx % 10 != 0], train_set.labels[idx % 10 != 0], [], [], [])
    if len(train_set) == 0:
        raise ValueError(f"{data}: no decodable training clips in the train split")
    print(f"video predict: {len(train_set)} train clips, {len(val_set)} val clips, K={K} -> N={N}, "
          f"{size}x{size}, {kwargs['channels']} channel(s)", file=sys.stderr)
    seed_everything(cfg.seed)
    model = get_model(MODEL, **kwargs)
    tc = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     seed=cfg.seed, warmup_steps=20, max_steps=cfg.max_steps, progress=cfg.progress, log_every=10,
                     metric="mse", mode="min", target=cfg.target, device=cfg.device)
    meta = _bundle.make_meta(KIND, MODEL, kwargs, front_end=fe.to_dict(), task=cfg.to_dict(),
                             data={"root": str(data), "train_clips": len(train_set), "val_clips": len(val_set)},
                             extras={"context": K, "horizon": N, "channels": kwargs["channels"],
                                     "description": f"predicts the next {N} frames of a clip from {K} "
                                                    f"(ConvLSTM encoder-forecaster, {size}x{size})"})
    ds = PredictDataset(train_set, kwargs["channels"], augment=cfg.augment, seed=cfg.seed)

    def loss_fn(m, x):
        pred = m(x[:, :K], N)
        return F.mse_loss(pred, x[:, K:K + N])

    def evaluate(m):
        if len(val_set) == 0:
            return {"mse": 0.0}
        c, t, p = predict_frames(m, val_set.frames, K, N, kwargs["channels"])
        mse = float(((p - t) ** 2).mean())
        return {"mse": mse, "mse_copy_last": float(((c[:, -1:] - t) ** 2).mean())}

    trainer = Trainer(model, tc, ds, out, loss_fn, evaluate, bundle=meta)
    result = trainer.fit(resume=resume)
    (out / "train_result.json").write_text(json.dumps(result, indent=2))
    return result


def load_predictor(checkpoint, device: str = "cpu", command: str = "lstm-media video predict"):
    """(model, bundle, front end) of a "video-predict" bundle; a checkpoint is required (none is shipped
    unless ``pipelines/models/video-predict.pt`` exists)."""
    model, b = _bundle.load(checkpoint, KIND, device=device, default=KIND, command=command)
    return model, b, VideoFrontEndConfig.from_dict(b["front_end"])


def evaluate_predict(checkpoint, data: str | Path, split: str | None = "test", context: int | None = None,
                     horizon: int | None = None, progress: bool = False, device: str = "cpu") -> dict:
    """MSE/SSIM of the predicted horizon vs copy-last-frame and mean-frame on ``data``'s ``split``
    (every clip when the folder has no split lists).  See :func:`metrics.prediction_scores`."""
    data = Path(data)
    if not data.is_dir():
        raise UserError(f"{data}: no such data folder")
    model, b, fe = load_predictor(checkpoint, device, "lstm-media video eval --task predict")
    K = context or b["extras"]["context"]
    N = horizon or b["extras"]["horizon"]
    if context is not None or horizon is not None:
        fe = predict_front_end(K, N, fe.size[0])
    _check_window(fe, K, N)
    clips = load_clipset(data, split, fe, progress=progress)
    if split is not None and len(clips) == 0 and not clips.skipped:
        clips = load_clipset(data, None, fe, progress=progress)
    if len(clips) == 0:
        raise UserError(f"{data}: no usable clips to evaluate ({len(clips.skipped)} unreadable)")
    c, t, p = predict_frames(model, clips.frames, K, N, b["extras"]["channels"])
    rep = prediction_scores(p, t, c)
    rep.update({"context": K, "skipped": len(clips.skipped), "model": b["model"], "kind": b["kind"],
                "checkpoint": b["path"]})
    return rep


def _panel_row(frames: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Frames (H, W, 3) side by side with white gaps."""
    H = frames[0].shape[0]
    sep = np.full((H, gap, 3), 255, np.uint8)
    out = []
    for k, f in enumerate(frames):
        out += ([sep] if k else []) + [f]
    return np.concatenate(out, 1)


def side_by_side(context: np.ndarray, truth: np.ndarray, pred: np.ndarray, scale: int = 2) -> np.ndarray:
    """Video frames (K+N, H', W', 3): input | truth | prediction.  During the K input frames the
    prediction panel repeats the input; afterwards the input panel holds its last frame, dimmed."""
    K = len(context)
    blank_pred = context
    rows = []
    for t in range(K + len(truth)):
        inp = context[t] if t < K else (context[-1] // 3)
        tru = context[t] if t < K else truth[t - K]
        pre = blank_pred[t] if t < K else pred[t - K]
        rows.append(_panel_row([inp, tru, pre]))
    v = np.stack(rows)
    return v.repeat(scale, 1).repeat(scale, 2) if scale > 1 else v


def strip(context: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """PNG strip: top row the K inputs then the N true frames; bottom row K empty cells then the N predictions."""
    blank = np.zeros_like(context[0])
    top = _panel_row(list(context) + list(truth))
    bottom = _panel_row([blank] * len(context) + list(pred))
    gap = np.full((2, top.shape[1], 3), 255, np.uint8)
    return np.concatenate([top, gap, bottom], 0)


def write_gif(frames: np.ndarray, path: Path, fps: float = 5.0) -> Path:
    """uint8 (T, H, W, 3) -> an endlessly looping GIF, atomically."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    return atomic_write(Path(path), lambda p: imgs[0].save(p, format="GIF", save_all=True, append_images=imgs[1:],
                                                     duration=int(1000 / fps), loop=0))


def write_png(img: np.ndarray, path: Path) -> Path:
    from PIL import Image

    return atomic_write(Path(path), lambda p: Image.fromarray(img).save(p, format="PNG"))


def write_mp4(frames: np.ndarray, path: Path, fps: float = 5.0) -> Path:
    from encoders.io.video import write_video

    return atomic_write(Path(path), lambda p: write_video(p, frames, fps, "mp4v"))


def predict_clips(checkpoint, paths: list[Path], outputs: list[tuple[Path, Path]], context: int | None = None,
                  horizon: int | None = None, device: str = "cpu", progress: bool = False) -> dict:
    """For every decodable clip: predict N frames from K, write its side-by-side video (GIF, or MP4 when
    the name ends in .mp4) and PNG strip to ``outputs[i] = (video path, png path)``.  Bad files are
    reported on stderr, counted and skipped."""
    model, b, fe = load_predictor(checkpoint, device)
    K = context or b["extras"]["context"]
    N = horizon or b["extras"]["horizon"]
    fe = predict_front_end(K, N, fe.size[0])
    skips = SkipCounter()
    rows = []
    for p, (vid, png) in zip(paths, outputs):
        kept, frames = decode_many([p], fe, skips, progress=False)
        if not kept:
            continue
        c, t, pr = predict_frames(model, frames, K, N, b["extras"]["channels"])
        cu, tu, pu = to_u8(c[0]), to_u8(t[0]), to_u8(pr[0])
        video = side_by_side(cu, tu, pu)
        (write_mp4 if vid.suffix.lower() == ".mp4" else write_gif)(video, vid)
        write_png(strip(cu, tu, pu), png)
        s = prediction_scores(pr, t, c)
        rows.append({"path": str(p), "video": str(vid), "strip": str(png), "mse": s["mse"],
                     "mse_copy_last": s["mse_copy_last"], "ssim": s["ssim"]})
    return {"predictions": rows, "n": len(rows), "skipped": len(skips), "skipped_files": skips.errors,
            "context": K, "horizon": N, "checkpoint": b["path"]}


__all__ = ["KIND", "MODEL", "predict_front_end", "to_unit", "to_u8", "PredictDataset", "predict_frames",
           "train_predict", "load_predictor", "evaluate_predict", "side_by_side", "strip", "write_gif", "write_png",
           "predict_clips"]
