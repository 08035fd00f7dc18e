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
from .io.video import read_video
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


def uint8_to_input(frames: Tensor, cfg: VideoFrontEndConfig) -> Tensor:
    """Cached uint8 (..., T, H, W, 3) -> normalised float (..., T, 3, H, W)."""
    x = frames.movedim(-1, -3).float().div_(255.0)
    return normalize(x, cfg)


def sample_clip(path: str | Path, cfg: VideoFrontEndConfig) -> np.ndarray:
    """Decode ``path`` once, resized while decoding, and keep T sampled frames: uint8 (T, H, W, 3).

    Raises :class:`encoders.io.DecodeError` (one line naming the file) when it cannot be decoded.
    """
    frames, _ = read_video(path, size=tuple(cfg.size))
    return frames[sample_indices(len(frames), cfg.num_frames, cfg.sampling, cfg.stride)]


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
    """

    in_channels: int = 3
    channels: tuple[int, ...] = (16, 32, 64)
    grid: int = 4
    grid_channels: int = 8
    feature_size: int = 128
    coords: bool = True
    global_pool: bool = True



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
        n_in = cfg.grid_channels * cfg.grid * cfg.grid + (2 * c_in if cfg.global_pool else 0)
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
            z += [f.amax((2, 3)), f.mean((2, 3))]
        return self.head(torch.cat(z, dim=1))


def build_torchvision_encoder(name: str, weights_path: str | Path | None = None) -> tuple[nn.Module, int]:
    """A torchvision backbone (e.g. "resnet18") as a frame encoder, its classifier removed.

    Weights only come from a local file (``weights_path``): nothing is downloaded.  Returns
    ``(module mapping (N, 3, H, W) -> (N, F), F)``.  Needs the optional ``torchvision`` package.
    """
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if weights_path is not None:
        model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    if hasattr(model, "fc"):
        f = model.fc.in_features
        model.fc = nn.Identity()
    elif hasattr(model, "classifier"):
        last = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)][0]
        f = last.in_features
        model.classifier = nn.Identity()
    else:
        raise ValueError(f"don't know how to strip the head of {name}")
    return model, f


# --- frozen feature cache ----------------------------------------------------------------------

@torch.no_grad()
def encode_frames(encoder: nn.Module, clips: Tensor, batch_size: int = 64) -> Tensor:
    """Frozen features of many clips: (N, T, 3, H, W) -> (N, T, F), in eval mode, batch by batch."""
    was = encoder.training
    encoder.eval()
    out = []
    for i in range(0, len(clips), batch_size):
        x = clips[i:i + batch_size]
        B, T = x.shape[:2]
        out.append(encoder(x.flatten(0, 1)).view(B, T, -1))
    encoder.train(was)
    return torch.cat(out) if out else clips.new_zeros(0, clips.shape[1], 0)


def cached_features(encoder: nn.Module, clips: Tensor, cache_path: str | Path, key: str,
                    batch_size: int = 64) -> Tensor:
    """Frozen features (N, T, F) of ``clips``, read from ``cache_path`` when its ``key`` matches,
    otherwise computed with :func:`encode_frames` and written there.  ``key`` must name both the
    encoder's weights and the clips (e.g. a hash of the checkpoint and of the clip list)."""
    cache_path = Path(cache_path)
    if cache_path.is_file():
        d = torch.load(cache_path, map_location="cpu", weights_only=True)
        if d.get("key") == key and d["features"].shape[0] == clips.shape[0]:
            return d["features"]
    feats = encode_frames(encoder, clips, batch_size)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"key": key, "features": feats}, cache_path)
    return feats


__all__ = ["VideoFrontEndConfig", "SAMPLING_MODES", "sample_indices", "frames_to_tensor", "normalize", "uint8_to_input",
           "sample_clip", "sample_frames", "load_clip", "FrameCNNConfig", "FrameCNN", "build_torchvision_encoder",
           "encode_frames", "cached_features"]
