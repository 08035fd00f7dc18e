"""Audio front end: MFCC / log-mel features, streaming framing, and waveform/feature augmentation.

Pure functions on batched tensors plus thin modules.  Framing is ``center=False`` (frame ``t`` covers
samples ``[t*hop, t*hop + n_fft)``) so that a stream cut into blocks at any sample gives exactly the
frames of the whole signal: that is what makes streaming detection equal to whole-clip inference.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor, nn
from .config import DictConfig


@dataclass(frozen=True)
class FeatureConfig(DictConfig):
    """Front-end parameters (defaults: 40 MFCC from 30 ms Hann windows every 10 ms at 16 kHz)."""

    kind: str = "mfcc"  # "mfcc" or "logmel"
    sample_rate: int = 16000
    n_mfcc: int = 40
    n_mels: int = 40
    win_ms: float = 30.0
    hop_ms: float = 10.0
    n_fft: int = 512  # FFT size (>= window); the window is zero-padded in the middle as in librosa
    f_min: float = 20.0
    f_max: float = 7600.0
    amin: float = 1e-10  # floor of the power before log: keeps digital silence finite

    def __post_init__(self):
        if self.kind not in ("mfcc", "logmel"):
            raise ValueError(f"kind must be 'mfcc' or 'logmel', got {self.kind!r}")
        if self.win_length > self.n_fft:
            raise ValueError("the window is longer than n_fft")

    @property
    def win_length(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_features(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def num_frames(self, n_samples: int) -> int:
        """Frames produced from ``n_samples`` samples (center=False)."""
        return 0 if n_samples < self.n_fft else 1 + (n_samples - self.n_fft) // self.hop_length



@lru_cache(maxsize=16)
def _tables(cfg: FeatureConfig):
    """Window, mel filter bank (Slaney scale and norm, as librosa) and DCT-II (ortho) for ``cfg``."""
    import torchaudio.functional as AF

    win = torch.hann_window(cfg.win_length, periodic=True, dtype=torch.float64)
    left = (cfg.n_fft - cfg.win_length) // 2
    win = nn.functional.pad(win, (left, cfg.n_fft - cfg.win_length - left))
    fb = AF.melscale_fbanks(cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max, cfg.n_mels, cfg.sample_rate,
                            norm="slaney", mel_scale="slaney")
    dct = AF.create_dct(cfg.n_mfcc, cfg.n_mels, norm="ortho")
    return win.float(), fb.float(), dct.float()


def frames(wave: Tensor, cfg: FeatureConfig) -> Tensor:
    """Cut (B, N) audio into (B, T, n_fft) overlapping frames, T = cfg.num_frames(N)."""
    if wave.shape[-1] < cfg.n_fft:
        return wave.new_zeros(wave.shape[0], 0, cfg.n_fft)
    return wave.unfold(-1, cfg.n_fft, cfg.hop_length)


def power_spectrum(wave: Tensor, cfg: FeatureConfig) -> Tensor:
    """(B, N) audio -> (B, T, n_fft//2 + 1) power spectrum of Hann-windowed frames."""
    win, _, _ = _tables(cfg)
    spec = torch.fft.rfft(frames(wave, cfg) * win.to(wave.device), n=cfg.n_fft)
    # |z|^2 through the real view: complex abs() is several times slower on CPU
    return torch.view_as_real(spec).pow(2).sum(-1)


def log_mel(wave: Tensor, cfg: FeatureConfig = FeatureConfig()) -> Tensor:
    """(B, N) float audio -> (B, T, n_mels) log-mel power in dB (10 log10, floored at ``amin``)."""
    _, fb, _ = _tables(cfg)
    mel = power_spectrum(wave, cfg) @ fb.to(wave.device)
    return 10.0 * torch.log10(mel.clamp_min(cfg.amin))


def mfcc(wave: Tensor, cfg: FeatureConfig = FeatureConfig()) -> Tensor:
    """(B, N) float audio -> (B, T, n_mfcc) MFCC (DCT-II, ortho, of the dB log-mel; librosa's
    ``mfcc(S=power_to_db(melspectrogram(..., center=False), top_db=None))``)."""
    _, _, dct = _tables(cfg)
    return log_mel(wave, cfg) @ dct.to(wave.device)


def features(wave: Tensor, cfg: FeatureConfig = FeatureConfig()) -> Tensor:
    """The configured feature: (B, N) or (N,) audio -> (B, T, D) (a 1-D input gives (T, D))."""
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave.unsqueeze(0)
    out = mfcc(wave, cfg) if cfg.kind == "mfcc" else log_mel(wave, cfg)
    return out[0] if squeeze else out


class FeatureExtractor(nn.Module):
    """Thin module over :func:`features`: (B, N) audio -> (B, T, D)."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, wave: Tensor) -> Tensor:
        return features(wave, self.cfg)


class StreamingFrames:
    """Feed audio in blocks of any size; get exactly the frames the whole signal would give.

    Keeps the last ``n_fft - hop`` samples (plus any remainder) between calls, so no frame is ever
    computed twice and none is lost at block edges.
    """

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self.buffer = torch.zeros(0)
        self.frames_done = 0

    def push(self, samples: Tensor) -> Tensor:
        """samples (n,) -> features (T_new, D) for every frame completed by this block."""
        buf = torch.cat([self.buffer, samples.float().reshape(-1)])
        t = self.cfg.num_frames(len(buf))
        if t == 0:
            self.buffer = buf
            return torch.zeros(0, self.cfg.n_features)
        feats = features(buf[: (t - 1) * self.cfg.hop_length + self.cfg.n_fft].unsqueeze(0), self.cfg)[0]
        self.buffer = buf[t * self.cfg.hop_length:]
        self.frames_done += t
        return feats


# --- augmentation -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AugmentConfig(DictConfig):
    """Training augmentation; every part can be switched off.  Draws come from a seeded generator."""

    noise_prob: float = 0.8  # chance to mix background noise into a clip
    snr_db: tuple[float, float] = (8.0, 30.0)  # uniform SNR range of that noise
    shift_ms: float = 100.0  # time shift up to +-shift_ms (zero fill); 0 turns it off
    time_masks: int = 2  # SpecAugment masks over time ...
    time_mask_max: int = 10  # ... each up to this many frames
    freq_masks: int = 2  # ... and over feature channels
    freq_mask_max: int = 5
    gain_db: tuple[float, float] = (-10.0, 6.0)  # random level of the speech itself
    speed: tuple[float, float] = (0.88, 1.12)  # speed perturbation (tempo and pitch together): new voices


    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(noise_prob=0.0, shift_ms=0.0, time_masks=0, freq_masks=0, gain_db=(0.0, 0.0), speed=(1.0, 1.0))


def speed_perturb(wave: np.ndarray, factor: float) -> np.ndarray:
    """Play (N,) audio ``factor`` times faster (linear interpolation; pitch moves with it, as Kaldi's
    speed perturbation), keeping the centre and the length N."""
    if factor == 1.0:
        return wave
    n = len(wave)
    m = int(round(n / factor))
    out = np.interp(np.arange(m) * factor, np.arange(n), wave).astype(np.float32)
    if m >= n:
        s = (m - n) // 2
        return out[s: s + n]
    left = (n - m) // 2
    return np.pad(out, (left, n - m - left))


def time_shift(wave: Tensor, shift: int) -> Tensor:
    """Shift (..., N) audio by ``shift`` samples (positive: later), filling with zeros."""
    if shift == 0:
        return wave
    out = torch.zeros_like(wave)
    if shift > 0:
        out[..., shift:] = wave[..., :-shift]
    else:
        out[..., :shift] = wave[..., -shift:]
    return out


def rms(wave: Tensor) -> Tensor:
    return wave.pow(2).mean(-1).sqrt()


def mix_noise(speech: Tensor, noise: Tensor, snr_db: Tensor | float) -> Tensor:
    """Add ``noise`` to ``speech`` at ``snr_db`` (per item for batches): (..., N) each.

    The SNR is measured on whole-clip RMS; silent speech gets the noise at its own level.
    """
    snr = torch.as_tensor(snr_db, dtype=speech.dtype)
    s, n = rms(speech), rms(noise).clamp_min(1e-8)
    scale = torch.where(s > 1e-6, s / (n * 10 ** (snr / 20)), torch.ones_like(s))
    return speech + noise * scale.unsqueeze(-1)


def spec_augment(feats: Tensor, time_masks: Tensor, freq_masks: Tensor, value: float = 0.0) -> Tensor:
    """SpecAugment masks on (B, T, D) features.

    Args:
        time_masks: (B, K, 2) long ``[start, width]`` in frames counted from the END of the sequence
            (so that the same masks apply whatever context precedes a clip); width 0 = no mask.
        freq_masks: (B, K, 2) long ``[start, width]`` over the feature axis.
        value: what masked cells become (0 = the training mean after normalisation).
    """
    B, T, D = feats.shape
    t = torch.arange(T, device=feats.device).view(1, 1, T)
    d = torch.arange(D, device=feats.device).view(1, 1, D)
    tm = time_masks.to(feats.device)
    fm = freq_masks.to(feats.device)
    start_t = T - tm[..., :1]  # counted from the end
    mt = ((t < start_t) & (t >= start_t - tm[..., 1:])).any(1)  # (B, T)
    mf = ((d >= fm[..., :1]) & (d < fm[..., :1] + fm[..., 1:])).any(1)  # (B, D)
    mask = mt.unsqueeze(-1) | mf.unsqueeze(1)
    return feats.masked_fill(mask, value)


def sample_spec_masks(rng: np.random.Generator, n_frames: int, n_features: int, cfg: AugmentConfig):
    """Draw one clip's SpecAugment masks: ``(time (K,2), freq (K,2))`` long tensors for :func:`spec_augment`."""
    def draw(k, mx, size):
        out = np.zeros((max(k, 1), 2), dtype=np.int64)
        for i in range(k):
            w = int(rng.integers(0, mx + 1))
            out[i] = (int(rng.integers(0, max(size - w, 0) + 1)), w)
        return torch.from_numpy(out)

    return draw(cfg.time_masks, cfg.time_mask_max, n_frames), draw(cfg.freq_masks, cfg.freq_mask_max, n_features)


__all__ = ["FeatureConfig", "FeatureExtractor", "StreamingFrames", "features", "mfcc", "log_mel", "speed_perturb",
           "power_spectrum", "frames", "AugmentConfig", "time_shift", "mix_noise", "rms", "spec_augment",
           "sample_spec_masks"]
