"""Video front end: frame sampling, resizing, normalisation, and small frame CNNs.

Pure functions first (``sample_indices``, ``frames_to_tensor``, ``load_clip``), then thin modules
(:class:`FrameCNN`).  File decoding itself lives in :mod:`encoders.io.video`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import torch
from torch import Tensor, nn

from .io import atomic_save
from .config import DictConfig

SAMPLING_MODES = ("uniform", "stride")


@dataclass(frozen=True)
class VideoFrontEndConfig(DictConfig):
    """How a clip becomes a tensor.

    Attributes:
        num_frames: T frames per clip.
        size: (H, W) every frame is resized to (aspect ratio is not kept: clips vary in shape).
        sampling: "uniform" (T frames spread evenly over the whole clip) or "stride" (every
            ``stride``-th frame from a centred window; short clips repeat their last frame).
        stride: frame step for "stride".
        mean, std: per-channel (RGB) normalisation of [0, 1] pixel values.
    """

    num_frames: int = 8
    size: tuple[int, int] = (32, 32)
    sampling: str = "uniform"
    stride: int = 2
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __post_init__(self):
        if self.sampling not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {self.sampling!r}")
        if self.num_frames < 1 or self.stride < 1:
            raise ValueError("num_frames and stride must be >= 1")


    def key(self) -> str:
        """Short hash naming caches of clips sampled with this config."""
        return hashlib.sha1(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


def sample_indices(n: int, num_frames: int, sampling: str = "uniform", stride: int = 2) -> np.ndarray:
    """Which of ``n`` decoded frames to keep, as ``num_frames`` indices in increasing order.

    "uniform": the centre of each of ``num_frames`` equal segments, ``floor((i + 0.5) * n / T)``
    (TSN-style), so the first and last frames are never over-weighted; clips shorter than T repeat
    frames.  "stride": every ``stride``-th frame of a window centred in the clip; past the end the
    last frame repeats.
    """
    if n < 1:
        raise ValueError("a clip needs at least one frame")
    if sampling == "uniform":
        idx = np.floor((np.arange(num_frames) + 0.5) * n / num_frames).astype(np.int64)
    elif sampling == "stride":
        span = (num_frames - 1) * stride + 1
        start = max((n - span) // 2, 0)
        idx = start + np.arange(num_frames) * stride
    else:
        raise ValueError(f"unknown sampling {sampling!r}")
    return np.clip(idx, 0, n - 1)


def frames_to_tensor(frames: np.ndarray, cfg: VideoFrontEndConfig) -> Tensor:
    """uint8 frames (T, H, W, 3) -> normalised float (T, 3, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    return normalize(x, cfg)


def normalize(x: Tensor, cfg: VideoFrontEndConfig) -> Tensor:
    """Float frames in [0, 1], (..., 3, H, W) -> (x - mean) / std per channel."""
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def contiguous(x: Tensor) -> Tensor:
    """``x.contiguous()``, on the CPU through numpy for uint8 and float32: torch copies a permuted uint8 clip
    ~4x slower, and arithmetic on a permuted (channels-last) view is ~3x slower than on a contiguous tensor
    (8 frames of 64x64: uint8 to normalised input 82 us instead of 341)."""
    if x.device.type == "cpu" and x.dtype in (torch.uint8, torch.float32) and not x.requires_grad:
        return torch.from_numpy(np.ascontiguousarray(x.numpy()))
    return x.contiguous()


def unit_float(x: Tensor) -> Tensor:
    """Frames as float in [0, 1]: uint8 ones divided by 255, float ones as they are."""
    return x if x.is_floating_point() else x.float().div_(255.0)


def uint8_to_input(frames: Tensor, cfg: VideoFrontEndConfig) -> Tensor:
    """Cached uint8 (..., T, H, W, 3) -> normalised float (..., T, 3, H, W), contiguous."""
    return normalize(unit_float(contiguous(frames.movedim(-1, -3))), cfg)


# Frames kept while streaming one clip before thinning: bounded memory for files of any length.
STREAM_KEEP = 512


def sample_times(times: np.ndarray, num_frames: int) -> np.ndarray:
    """"uniform" sampling by presentation time: indices into ``times`` (increasing seconds).

    A constant frame rate (every frame step within 10 % of the median; decoders round timestamps)
    gives exactly :func:`sample_indices`.  A variable frame rate takes, for each of T equal spans of
    the clip's duration, the last frame shown at the span's centre, so the samples stay evenly
    spread in time where index sampling would crowd them into the part with more frames per second.
    """
    times = np.asarray(times, dtype=np.float64)
    n = len(times)
    if n < 3:
        return sample_indices(max(n, 1), num_frames)
    steps = np.diff(times)
    dt = float(np.median(steps))
    if dt > 0 and np.all(np.abs(steps - dt) <= 0.1 * dt):
        return sample_indices(n, num_frames)
    duration = times[-1] - times[0] + (steps[-1] if steps[-1] > 0 else dt)
    target = times[0] + (np.arange(num_frames) + 0.5) * duration / num_frames
    idx = np.searchsorted(times, target, side="right") - 1
    return np.clip(idx, 0, n - 1).astype(np.int64)


class StreamSampler:
    """Keeps a bounded, evenly thinned subset of a stream of frames, to sample T of them at the end.

    Every frame is kept until ``budget`` are held; then every other one is dropped and from there
    on only every 2nd (then 4th, ...) frame is kept.  :meth:`sample` computes the sampled positions
    from the real frame count ("stride") or the real timestamps ("uniform", :func:`sample_times`:
    variable frame rates sample evenly in time) and serves each by the nearest kept frame at or
    before it: a stream of up to ``budget`` frames is sampled exactly, a longer one less than one
    keep-step early (``budget`` >> T, so the spread over the clip is unchanged).
    """

    def __init__(self, budget: int = STREAM_KEEP):
        self.budget = budget
        self.kept: list[np.ndarray] = []
        self.kept_idx: list[int] = []
        self.times: list[float] = []  # 8 bytes a frame: even a day of video is small
        self.step = 1

    def __len__(self) -> int:
        return len(self.times)

    def add(self, t: float, frame: np.ndarray) -> None:
        n = len(self.times)
        self.times.append(float(t))
        if n % self.step == 0:
            self.kept.append(frame)
            self.kept_idx.append(n)
            if len(self.kept) > self.budget:
                self.kept, self.kept_idx = self.kept[::2], self.kept_idx[::2]
                self.step *= 2

    def sample(self, cfg: VideoFrontEndConfig) -> np.ndarray:
        """T frames (T, H, W, 3) as ``cfg`` samples them."""
        n = len(self.times)
        if n == 0:
            raise ValueError("a clip needs at least one frame")
        if cfg.sampling == "uniform":
            want = sample_times(np.asarray(self.times), cfg.num_frames)
        else:
            want = sample_indices(n, cfg.num_frames, cfg.sampling, cfg.stride)
        pos = np.searchsorted(np.asarray(self.kept_idx), want, side="right") - 1
        return np.stack([self.kept[int(max(p, 0))] for p in pos])


def sample_stream(frames, cfg: VideoFrontEndConfig, budget: int = STREAM_KEEP) -> np.ndarray:
    """T sampled frames from an iterator of ``(timestamp seconds, frame)``, holding at most ``budget``
    frames at a time (see :class:`StreamSampler`)."""
    s = StreamSampler(budget)
    for t, f in frames:
        s.add(t, f)
    return s.sample(cfg)


def sample_clip(path: str | Path, cfg: VideoFrontEndConfig, budget: int = STREAM_KEEP) -> np.ndarray:
    """Decode ``path`` once, streaming and resized while decoding, and keep T sampled frames: uint8
    (T, H, W, 3).  Memory stays bounded for a file of any length (see :func:`sample_stream`).

    Raises :class:`encoders.io.DecodeError` (one line naming the file) when it cannot be decoded.
    """
    from .io.video import iter_frames

    return sample_stream(iter_frames(path, size=tuple(cfg.size)), cfg, budget)


def sample_frames(frames: np.ndarray, cfg: VideoFrontEndConfig) -> np.ndarray:
    """Resize already decoded frames (N, H, W, 3) to ``cfg.size`` and keep T of them."""
    import cv2

    idx = sample_indices(len(frames), cfg.num_frames, cfg.sampling, cfg.stride)
    out = [f if f.shape[:2] == tuple(cfg.size) else
           cv2.resize(f, (cfg.size[1], cfg.size[0]), interpolation=cv2.INTER_AREA) for f in frames[idx]]
    return np.stack(out)


def load_clip(path: str | Path, cfg: VideoFrontEndConfig) -> Tensor:
    """Decode + sample + resize + normalise: a model-ready (T, 3, H, W) float tensor."""
    return frames_to_tensor(sample_clip(path, cfg), cfg)


# --- frame CNN ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class FrameCNNConfig(DictConfig):
    """A small per-frame CNN.

    Attributes:
        in_channels: 3 for RGB.
        channels: output channels of each conv block (3x3 conv, batch norm, ReLU, 2x2 max-pool).
        grid, grid_channels: a 1x1 conv squeezes the last feature map to ``grid_channels`` maps,
            average-pooled to grid x grid cells and flattened, so the features keep *where* things
            are (position over time is what tells "moves left" from "moves right").  Kept narrow on
            purpose: a wide position-specific pathway lets a from-scratch CNN memorise clips instead
            of learning shapes.  0 switches it off.
        global_pool: the global max and mean of every channel: position-free evidence of *what* is
            there (colour, shape).
        feature_size: F, size of the output features.
        coords: add two coordinate channels (x, y in [-1, 1]) to the input (CoordConv).
        pool_mean: with ``global_pool``, also the global mean (it grows with the object's area, so
            it carries size; the max does not).
    """

    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 64)
    grid: int = 4
    grid_channels: int = 8
    feature_size: int = 128
    coords: bool = True
    global_pool: bool = True
    pool_mean: bool = True



class FrameCNN(nn.Module):
    """(N, C, H, W) -> (N, feature_size).  Trained end-to-end with the model by default."""

    def __init__(self, cfg: FrameCNNConfig = FrameCNNConfig()):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels + (2 if cfg.coords else 0)
        for c in cfg.channels:
            # conv at full resolution, then max-pool: strided convs (4x cheaper) skip every other
            # pixel and lose the fine edges that tell a small triangle from a circle
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.squeeze = nn.Conv2d(c_in, cfg.grid_channels, 1) if cfg.grid_channels else None
        self.pool = nn.AdaptiveAvgPool2d(cfg.grid)
        n_in = cfg.grid_channels * cfg.grid * cfg.grid + ((1 + cfg.pool_mean) * c_in if cfg.global_pool else 0)
        if n_in == 0:
            raise ValueError("FrameCNN needs grid_channels > 0 or global_pool")
        self.head = nn.Sequential(nn.Linear(n_in, cfg.feature_size), nn.ReLU(inplace=True))

    @property
    def feature_size(self) -> int:
        return self.cfg.feature_size

    def forward(self, x: Tensor) -> Tensor:
        if self.cfg.coords:
            N, _, H, W = x.shape
            ys = torch.linspace(-1, 1, H, device=x.device, dtype=x.dtype).view(1, 1, H, 1).expand(N, 1, H, W)
            xs = torch.linspace(-1, 1, W, device=x.device, dtype=x.dtype).view(1, 1, 1, W).expand(N, 1, H, W)
            x = torch.cat([x, xs, ys], dim=1)
        f = self.body(x)
        z = []
        if self.squeeze is not None:
            z.append(self.pool(self.squeeze(f)).flatten(1))
        if self.cfg.global_pool:
            z += [f.amax((2, 3))] + ([f.mean((2, 3))] if self.cfg.pool_mean else [])
        return self.head(torch.cat(z, dim=1))


SMALL_CNN = "small-cnn"
# what torchvision's classification weights were trained on (their own preprocessing)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torchvision_classifiers() -> list[str]:
    """Names of every ``torchvision.models`` image classifier (resnet18, mobilenet_v3_small, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def frame_encoder_names() -> list[str]:
    """What ``--frame-encoder`` accepts: "small-cnn" and every torchvision classifier name."""
    return [SMALL_CNN] + torchvision_classifiers()


def encoder_normalisation(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the pixels an encoder expects: ImageNet's for torchvision models, ours otherwise."""
    if name == SMALL_CNN:
        return VideoFrontEndConfig.mean, VideoFrontEndConfig.std
    return IMAGENET_MEAN, IMAGENET_STD


def _strip_head(model: nn.Module, name: str) -> int:
    """Replace the classifier head of a torchvision model by identity; returns the feature size F."""
    for attr in ("fc", "classifier", "heads", "head"):
        head = getattr(model, attr, None)
        if head is None or isinstance(head, nn.Identity):
            continue
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)] if isinstance(head, nn.Module) else []
        if not linears:
            continue
        setattr(model, attr, nn.Identity())
        # convnext/swin keep a norm in the head: dropped with it (features are still usable)
        return linears[0].in_features
    raise ValueError(f"don't know how to strip the classifier head of {name}")


def build_torchvision_encoder(name: str, weights_path: str | Path | None = None) -> tuple[nn.Module, int]:
    """A torchvision classifier (e.g. "resnet18") as a frame encoder, its classifier head removed.

    Weights only come from a local file (``weights_path``: the classifier's state dict, head
    included); nothing is ever downloaded.  Returns ``(module mapping (N, 3, H, W) -> (N, F), F)``.
    A name that is no torchvision classifier, or a file that does not fit, raises ``ValueError``
    with one line.
    """
    import torchvision

    names = torchvision_classifiers()
    if name not in names:
        raise ValueError(f"unknown frame encoder {name!r}; use {SMALL_CNN} or a torchvision classifier "
                         f"({', '.join(n for n in names if n.startswith(('resnet', 'mobilenet')))}, ...)")
    model = torchvision.models.get_model(name, weights=None)
    if weights_path is not None:
        load_classifier_weights(model, weights_path, name)
    f = _strip_head(model, name)
    return model, f


def load_classifier_weights(model: nn.Module, weights_path: str | Path, name: str) -> None:
    """Load a local state dict into a torchvision classifier; one-line ``ValueError`` when it does not fit."""
    path = Path(weights_path)
    if not path.is_file():
        raise ValueError(f"--weights {path}: no such file")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - anything unreadable is one line naming the file
        raise ValueError(f"--weights {path}: not a readable state dict ({type(e).__name__})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"--weights {path}: holds no state dict of tensors")
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        lines = [l.strip() for l in str(e).splitlines() if l.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise ValueError(f"--weights {path} does not fit {name}: {detail[:300]}") from None


class TorchvisionFrameEncoder(nn.Module):
    """A torchvision classifier without its head: (N, 3, H, W) -> (N, F).

    Built from the name alone (random weights); a bundle stores the weights with the model, and
    ``weights_path`` (a local state dict) only serves training.
    """

    def __init__(self, name: str, weights_path: str | Path | None = None):
        super().__init__()
        self.name = name
        self.net, self._f = build_torchvision_encoder(name, weights_path)

    @property
    def feature_size(self) -> int:
        return self._f

    def load_weights(self, weights_path: str | Path) -> None:
        """Load a local state dict of the whole classifier (head included, then dropped)."""
        full, _ = build_torchvision_encoder(self.name, weights_path)
        self.net.load_state_dict(full.state_dict())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


def build_frame_encoder(name: str = SMALL_CNN, frame_cnn: dict | None = None) -> nn.Module:
    """The frame encoder called ``name``: our :class:`FrameCNN` (config ``frame_cnn``) or a torchvision
    classifier (randomly initialised).  Every encoder has ``feature_size``."""
    if name == SMALL_CNN:
        return FrameCNN(FrameCNNConfig.from_dict(frame_cnn or {}))
    return TorchvisionFrameEncoder(name)


def weights_hash(module: nn.Module) -> str:
    """Short hash of every parameter and buffer of ``module`` (names, shapes, dtypes and values)."""
    h = hashlib.sha1()
    for k, v in module.state_dict().items():
        v = v.detach().cpu().contiguous()
        h.update(f"{k}{tuple(v.shape)}{v.dtype}".encode())
        h.update(v.view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]


# --- frozen feature cache ----------------------------------------------------------------------

@torch.no_grad()
def encode_frames(encoder: nn.Module, clips: Tensor, batch_size: int = 64, prepare=None,
                  progress: bool = False) -> Tensor:
    """Frozen features of many clips: (N, T, ...) -> (N, T, F), in eval mode, batch by batch.

    ``prepare`` maps a batch of stored clips (e.g. uint8 (B, T, H, W, 3)) to encoder input
    (B, T, 3, H, W) on the encoder's device; None: ``clips`` already are that input.  Only one batch
    of float frames exists at a time, so N may be large.
    """
    from tqdm.auto import tqdm

    was = encoder.training
    encoder.eval()
    dev = next(encoder.parameters()).device
    out = []
    for i in tqdm(range(0, len(clips), batch_size), desc="encode frames", disable=not progress, leave=False):
        x = clips[i:i + batch_size]
        x = prepare(x) if prepare is not None else x
        B, T = x.shape[:2]
        out.append(encoder(x.flatten(0, 1).to(dev)).float().view(B, T, -1).cpu())
    encoder.train(was)
    return torch.cat(out) if out else torch.zeros(0, clips.shape[1] if clips.dim() > 1 else 0, 0)


def cached_features(encoder: nn.Module, clips: Tensor, cache_path: str | Path, key: str,
                    batch_size: int = 64, prepare=None, progress: bool = False) -> tuple[Tensor, bool]:
    """Frozen features (N, T, F) of ``clips`` and whether they came from ``cache_path``.

    The cache is read when its ``key`` and clip count match, otherwise the features are computed with
    :func:`encode_frames` and written there atomically.  ``key`` must name everything the features
    depend on: the encoder and its weights (:func:`weights_hash`), the front end and the clips
    themselves (paths, sizes, modification times).  An unreadable cache file is recomputed.
    """
    cache_path = Path(cache_path)
    if cache_path.is_file():
        try:
            d = torch.load(cache_path, map_location="cpu", weights_only=True)
            if d.get("key") == key and torch.is_tensor(d.get("features")) and d["features"].shape[0] == clips.shape[0]:
                return d["features"], True
        except Exception:  # noqa: BLE001 - a broken cache is never trusted, just rebuilt
            pass
    feats = encode_frames(encoder, clips, batch_size, prepare, progress)
    try:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"key": key, "features": feats}, cache_path)
    except OSError:  # a read-only data folder: train without a cache
        pass
    return feats, False


__all__ = ["SMALL_CNN", "IMAGENET_MEAN", "IMAGENET_STD", "torchvision_classifiers", "frame_encoder_names",
           "encoder_normalisation", "build_frame_encoder", "TorchvisionFrameEncoder", "load_classifier_weights",
           "weights_hash", "VideoFrontEndConfig", "SAMPLING_MODES", "sample_indices", "frames_to_tensor",
           "normalize", "contiguous", "unit_float", "uint8_to_input", "sample_times", "StreamSampler", "sample_stream",
           "sample_clip", "sample_frames", "load_clip", "FrameCNNConfig", "FrameCNN", "build_torchvision_encoder",
           "encode_frames", "cached_features"]
