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


def warped_filterbank(cfg: FeatureConfig, warp: Tensor) -> Tensor:
    """Vocal-tract-length perturbation (Jaitly & Hinton 2013) as a warp of the mel filter bank:
    (B,) factors -> (B, n_fft//2 + 1, n_mels) banks whose filter for frequency f reads the spectrum at
    ``f * warp`` (linear interpolation along the bins): a factor > 1 shows every formant lower, as a
    longer vocal tract would."""
    _, fb, _ = _tables(cfg)
    fb = fb.to(warp.device)
    n = fb.shape[0]
    pos = (torch.arange(n, device=warp.device, dtype=torch.float32).unsqueeze(0) / warp.float().unsqueeze(1))
    pos = pos.clamp(0, n - 1)  # (B, F): which original bin each bin's weights come from
    lo = pos.floor().long().clamp(max=n - 2)
    w = (pos - lo).unsqueeze(-1)
    return fb[lo] * (1 - w) + fb[lo + 1] * w


def log_mel(wave: Tensor, cfg: FeatureConfig = FeatureConfig(), warp: Tensor | None = None) -> Tensor:
    """(B, N) float audio -> (B, T, n_mels) log-mel power in dB (10 log10, floored at ``amin``).
    ``warp`` (B,): per-item VTLP factors (see :func:`warped_filterbank`); None = no warp."""
    _, fb, _ = _tables(cfg)
    power = power_spectrum(wave, cfg)
    mel = power @ fb.to(wave.device) if warp is None else torch.bmm(power, warped_filterbank(cfg, warp))
    return 10.0 * torch.log10(mel.clamp_min(cfg.amin))


def mfcc(wave: Tensor, cfg: FeatureConfig = FeatureConfig(), warp: Tensor | None = None) -> Tensor:
    """(B, N) float audio -> (B, T, n_mfcc) MFCC (DCT-II, ortho, of the dB log-mel; librosa's
    ``mfcc(S=power_to_db(melspectrogram(..., center=False), top_db=None))``)."""
    _, _, dct = _tables(cfg)
    return log_mel(wave, cfg, warp) @ dct.to(wave.device)


def features(wave: Tensor, cfg: FeatureConfig = FeatureConfig(), warp: Tensor | None = None) -> Tensor:
    """The configured feature: (B, N) or (N,) audio -> (B, T, D) (a 1-D input gives (T, D)).
    ``warp``: optional (B,) VTLP factors (training augmentation)."""
    squeeze = wave.dim() == 1
    if squeeze:
        wave = wave.unsqueeze(0)
    out = mfcc(wave, cfg, warp) if cfg.kind == "mfcc" else log_mel(wave, cfg, warp)
    return out[0] if squeeze else out


class FeatureExtractor(nn.Module):
    """Thin module over :func:`features`: (B, N) audio -> (B, T, D)."""

    def __init__(self, cfg: FeatureConfig = FeatureConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, wave: Tensor, warp: Tensor | None = None) -> Tensor:
        return features(wave, self.cfg, warp)


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
    # channel and speaker robustness (issue #9): each applies to a clip with its probability
    vtlp: tuple[float, float] = (1.0, 1.0)  # vocal-tract-length warp of the mel bank (1, 1: off)
    reverb_prob: float = 0.0  # room reverberation (exponentially decaying noise impulse response)
    rt60: tuple[float, float] = (0.15, 0.8)  # its reverberation time in seconds
    eq_prob: float = 0.0  # microphone / loudspeaker colouring: a random smooth gain curve over frequency
    eq_db: float = 10.0  # ... up to +-eq_db at its control points
    phone_prob: float = 0.0  # telephone channel: band 300-3400 Hz, 8 kHz, 8-bit mu-law
    clip_prob: float = 0.0  # hard clipping at 30-80 % of the peak
    babble_prob: float = 0.0  # 1-3 other clips spoken over this one
    babble_snr_db: tuple[float, float] = (5.0, 20.0)

    @classmethod
    def off(cls) -> "AugmentConfig":
        return cls(noise_prob=0.0, shift_ms=0.0, time_masks=0, freq_masks=0, gain_db=(0.0, 0.0), speed=(1.0, 1.0))

    @classmethod
    def basic(cls) -> "AugmentConfig":
        """The recipe before issue #9: noise, shift, gain, speed, SpecAugment; no channel augmentation."""
        return cls()

    @classmethod
    def robust(cls) -> "AugmentConfig":
        """Speaker and channel augmentation on top of :meth:`basic` (issue #9)."""
        return cls(vtlp=(0.85, 1.18), reverb_prob=0.3, eq_prob=0.5, phone_prob=0.25, clip_prob=0.05,
                   babble_prob=0.15, snr_db=(3.0, 30.0), speed=(0.85, 1.18))


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


def reverberate(wave: np.ndarray, rng: np.random.Generator, rt60: float, sr: int = 16000) -> np.ndarray:
    """Convolve (N,) audio with a simulated room: a direct path plus exponentially decaying noise
    (energy falls 60 dB in ``rt60`` s) after a 2-10 ms pre-delay; the RMS is kept."""
    from scipy.signal import fftconvolve

    n = max(int(min(rt60, 1.0) * sr), 16)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    delay = int(rng.uniform(0.002, 0.010) * sr)
    tail[:delay] = 0.0
    ir = tail * 10 ** (rng.uniform(-6, 3) / 20) / max(float(np.sqrt(np.sum(tail ** 2))), 1e-8)  # direct-to-reverb ratio
    ir[0] = 1.0
    out = fftconvolve(wave, ir)[: len(wave)]
    return (out * (np.sqrt(np.mean(wave ** 2)) / max(float(np.sqrt(np.mean(out ** 2))), 1e-8))).astype(np.float32)


def random_eq(wave: np.ndarray, rng: np.random.Generator, max_db: float, sr: int = 16000) -> np.ndarray:
    """Colour (N,) audio with a random smooth gain curve: +-``max_db`` at 8 log-spaced points from 60 Hz to
    Nyquist plus a random tilt, interpolated over log frequency (a microphone, a small loudspeaker).
    The RMS is kept."""
    spec = np.fft.rfft(wave)
    f = np.fft.rfftfreq(len(wave), 1 / sr)
    pts = np.geomspace(60.0, sr / 2, 8)
    db = rng.uniform(-max_db, max_db, len(pts)) + rng.uniform(-1, 1) * max_db * np.linspace(-1, 1, len(pts))
    gain = 10 ** (np.interp(np.log(np.maximum(f, 1.0)), np.log(pts), db) / 20)
    out = np.fft.irfft(spec * gain, n=len(wave))
    return (out * (np.sqrt(np.mean(wave ** 2)) / max(float(np.sqrt(np.mean(out ** 2))), 1e-8))).astype(np.float32)


def mu_law(wave: np.ndarray, bits: int = 8) -> np.ndarray:
    """Quantise [-1, 1] audio through ``bits``-bit mu-law (G.711 style: encode, then decode)."""
    mu = 2 ** bits - 1
    x = np.clip(wave, -1, 1)
    y = np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu)
    y = np.round((y + 1) / 2 * mu) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def telephone(wave: np.ndarray, sr: int = 16000, band: tuple[float, float] | None = (300.0, 3400.0)) -> np.ndarray:
    """A telephone channel: (optional) band-pass, down to 8 kHz, 8-bit mu-law, back up to ``sr``.
    Deterministic; the level is normalised to a 0.5 peak before the codec (as an AGC would)."""
    from scipy.signal import resample_poly

    from math import gcd

    x = np.asarray(wave, np.float64)
    if band is not None:
        spec = np.fft.rfft(x)
        f = np.fft.rfftfreq(len(x), 1 / sr)
        lo, hi = band
        gain = np.clip((f - lo * 0.7) / (lo * 0.3), 0, 1) * np.clip((hi * 1.15 - f) / (hi * 0.15), 0, 1)
        x = np.fft.irfft(spec * gain, n=len(x))
    peak = max(float(np.abs(x).max()), 1e-8)
    g = gcd(8000, sr)
    narrow = resample_poly(x / peak * 0.5, 8000 // g, sr // g)
    back = resample_poly(mu_law(narrow), sr // g, 8000 // g)[: len(x)]
    back = np.pad(back, (0, len(x) - len(back)))
    return (back * peak / 0.5).astype(np.float32)


def hard_clip(wave: np.ndarray, level: float) -> np.ndarray:
    """Clip (N,) audio at ``level`` x its peak, then restore the peak (an overdriven input)."""
    peak = max(float(np.abs(wave).max()), 1e-8)
    return (np.clip(wave, -level * peak, level * peak) / level).astype(np.float32)


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
           "warped_filterbank", "reverberate", "random_eq", "mu_law", "telephone", "hard_clip",
           "power_spectrum", "frames", "AugmentConfig", "time_shift", "mix_noise", "rms", "spec_augment",
           "sample_spec_masks"]
