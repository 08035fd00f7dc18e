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
    # |z|^2 as re^2 + im^2: complex abs() is several times slower on CPU, and so is a sum over the real view's
    # last axis of 2 (the same values, bit for bit; 4 ms instead of 16 for a batch of 64 1.5 s clips)
    return spec.real.square() + spec.imag.square()


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


# Issue #13 §4: these run for a good share of the training clips, so they are written for speed on one CPU
# core: scipy.fft (pocketfft) at fast sizes, float32 where the result is the same to float noise, cached grids
# and filters, and each one as a kernel over the rows of a (B, N) array (``*_rows``): one FFT call over
# several rows costs a third of a row-by-row call per row, and gives every row bit for bit what a call on
# that row alone gives (the 1-D functions are the kernels on one row), so a clip is the same whether it is
# made alone or in a batch.  tests/test_kws_augment_speed.py keeps the plain versions these replaced and
# checks that the two agree on seeded input.
_CHUNK = 4  # rows per FFT call in the *_rows kernels


def _same_rms(out: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(N,) float32 ``out`` scaled in place to the RMS of ``ref``."""
    s = float(np.sqrt(np.dot(ref, ref) / max(len(ref), 1)))
    o = max(float(np.sqrt(np.dot(out, out) / max(len(out), 1))), 1e-8)
    out *= np.float32(s / o)
    return out


def room_impulse(rng: np.random.Generator, rt60: float, sr: int = 16000) -> np.ndarray:
    """The room of :func:`reverberate` (float64): a direct path plus exponentially decaying noise (energy
    falls 60 dB in ``rt60`` s, at most 1 s long) after a 2-10 ms pre-delay, at a random direct-to-reverb
    ratio (-6..+3 dB)."""
    n = max(int(min(rt60, 1.0) * sr), 16)
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    delay = int(rng.uniform(0.002, 0.010) * sr)
    tail[:delay] = 0.0
    ir = tail * 10 ** (rng.uniform(-6, 3) / 20) / max(float(np.sqrt(np.sum(tail ** 2))), 1e-8)  # direct-to-reverb ratio
    ir[0] = 1.0
    return ir


def _conv_size(m: int) -> int:
    """An FFT size >= m from a short ladder of fast ones (2^k, 3 2^k, 9 2^k): rows of a batch whose rooms
    differ in length still share a size (the size is a function of m alone, so alone or in a batch a row
    gets the same one)."""
    p = 1 << max(int(m - 1).bit_length(), 4)
    return next(c for c in (9 * p // 16, 3 * p // 4, p) if c >= m)


def reverb_rows(x: np.ndarray, irs: list[np.ndarray]) -> np.ndarray:
    """Rows of (B, N) float32 ``x`` each convolved with its room ``irs[b]`` (the first N samples of the
    linear convolution), the RMS of each row kept.  Returns a new (B, N) float32 array."""
    from scipy import fft as _fft

    B, N = x.shape
    out = np.empty((B, N), np.float32)
    sizes = [_conv_size(N + len(ir) - 1) for ir in irs]
    for size in sorted(set(sizes)):
        group = [b for b in range(B) if sizes[b] == size]
        for c in range(0, len(group), _CHUNK):  # a few rows per FFT call (more would leave the cache)
            rows = group[c: c + _CHUNK]
            h = np.zeros((len(rows), max(len(irs[b]) for b in rows)), np.float32)
            for r, b in enumerate(rows):
                h[r, : len(irs[b])] = irs[b]
            spec = _fft.rfft(x[rows], size, axis=-1)
            spec *= _fft.rfft(h, size, axis=-1)
            out[rows] = _fft.irfft(spec, size, axis=-1)[:, :N]
    for b in range(B):
        _same_rms(out[b], x[b])
    return out


def reverberate(wave: np.ndarray, rng: np.random.Generator, rt60: float, sr: int = 16000) -> np.ndarray:
    """Convolve (N,) audio with a simulated room: a direct path plus exponentially decaying noise
    (energy falls 60 dB in ``rt60`` s) after a 2-10 ms pre-delay; the RMS is kept."""
    return reverb_rows(np.asarray(wave, np.float32)[None], [room_impulse(rng, rt60, sr)])[0]


@lru_cache(maxsize=8)
def _eq_grid(n: int, sr: int):
    """For the rfft bins of an ``n``-sample signal: the bin ranges ``(segment, first, stop)`` lying between
    two control points of :func:`random_eq`'s gain curve (the bins are in order, so each segment is one
    range), and each bin's position in its segment (np.interp over log frequency, the ends held)."""
    lp = np.log(np.geomspace(60.0, sr / 2, 8))
    x = np.log(np.maximum(np.fft.rfftfreq(n, 1 / sr), 1.0))
    i = np.clip(np.searchsorted(lp, x, side="right") - 1, 0, len(lp) - 2)
    w = np.clip((x - lp[i]) / (lp[i + 1] - lp[i]), 0.0, 1.0)
    edges = np.flatnonzero(np.diff(i)) + 1
    starts, stops = np.r_[0, edges], np.r_[edges, len(i)]
    return tuple((int(i[a]), int(a), int(b)) for a, b in zip(starts, stops)), w.astype(np.float32)


def eq_draw(rng: np.random.Generator, max_db: float) -> np.ndarray:
    """The 8 control-point gains (dB) of :func:`random_eq`: +-max_db each plus a random tilt."""
    return rng.uniform(-max_db, max_db, 8) + rng.uniform(-1, 1) * max_db * np.linspace(-1, 1, 8)


def eq_rows(x: np.ndarray, db: np.ndarray, sr: int = 16000) -> np.ndarray:
    """Rows of (B, N) float32 ``x`` coloured by the gain curves of (B, 8) control-point gains ``db``
    (:func:`eq_draw`), interpolated over log frequency; each row's RMS kept.  A new (B, N) float32 array."""
    from scipy import fft as _fft

    B, N = x.shape
    db = np.asarray(db, np.float64).reshape(B, -1)
    segments, w = _eq_grid(N, sr)
    a = (db * (np.log(10.0) / 20)).astype(np.float32)  # dB -> natural log of the amplitude
    out = np.empty((B, N), np.float32)
    for c in range(0, B, _CHUNK):  # a few rows per FFT call (more would leave the cache)
        ac = a[c: c + _CHUNK]
        g = np.empty((len(ac), len(w)), np.float32)
        for k, lo, hi in segments:  # the curve, linear over log frequency between control points
            np.multiply(w[lo:hi], ac[:, k + 1: k + 2] - ac[:, k: k + 1], out=g[:, lo:hi])
            g[:, lo:hi] += ac[:, k: k + 1]
        spec = _fft.rfft(x[c: c + _CHUNK], axis=-1)
        spec *= np.exp(g, out=g)
        out[c: c + _CHUNK] = _fft.irfft(spec, N, axis=-1)
    for b in range(B):
        _same_rms(out[b], x[b])
    return out


def random_eq(wave: np.ndarray, rng: np.random.Generator, max_db: float, sr: int = 16000) -> np.ndarray:
    """Colour (N,) audio with a random smooth gain curve: +-``max_db`` at 8 log-spaced points from 60 Hz to
    Nyquist plus a random tilt, interpolated over log frequency (a microphone, a small loudspeaker).
    The RMS is kept."""
    return eq_rows(np.asarray(wave, np.float32)[None], eq_draw(rng, max_db)[None], sr)[0]


@lru_cache(maxsize=2)
def _mu_table(bits: int) -> np.ndarray:
    """The decoded value of each of the 2**bits mu-law codes, computed as :func:`mu_law` decodes."""
    mu = 2 ** bits - 1
    y = np.arange(mu + 1, dtype=np.float64) / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu).astype(np.float32)


def mu_law(wave: np.ndarray, bits: int = 8) -> np.ndarray:
    """Quantise [-1, 1] audio through ``bits``-bit mu-law (G.711 style: encode, then decode)."""
    mu = 2 ** bits - 1
    x = np.clip(wave, -1, 1)
    y = np.abs(x)  # the same operations, in the same order, as sign(x) * log1p(mu |x|) / log1p(mu)
    y *= mu
    np.log1p(y, out=y)
    y *= np.sign(x)
    y = y / np.log1p(mu)  # not in place: a float64 scalar makes float32 input float64 here, as before
    y += 1
    y /= 2
    y *= mu
    np.round(y, out=y)  # the code 0..mu; decoding it is a table look-up
    nan = np.isnan(y)
    out = _mu_table(bits)[np.where(nan, 0, y).astype(np.intp)]
    out[nan] = np.nan  # as the formula gives
    return out


@lru_cache(maxsize=4)
def _halfband(n_taps: int = 41) -> np.ndarray:
    """scipy's resample_poly filter for a factor of 2: a Kaiser-windowed sinc (beta 5), cutoff at 8 kHz's
    Nyquist, 20 taps each side."""
    from scipy.signal import firwin

    return firwin(n_taps, 0.5, window=("kaiser", 5.0))


@lru_cache(maxsize=1)
def _halfband_edges() -> tuple[np.ndarray, np.ndarray]:
    """What circular filtering by the centred half-band filter h adds to the first and last r = 20 outputs
    of an N-sample signal x (the terms that wrap around): start = A @ x[N-r:], end = B @ x[:r]."""
    h = _halfband()
    r = len(h) // 2
    A, B = np.zeros((r, r)), np.zeros((r, r))
    for m in range(r):
        for p in range(m, r):
            A[m, p] = h[m + 2 * r - p]  # output m reads x[N - r + p] through tap m + r - p of the centred filter
        for q in range(m + 1):
            B[m, q] = h[m - q]  # output N - r + m reads x[q] through tap m - r - q
    return A, B


@lru_cache(maxsize=8)
def _halfband_response(n: int) -> np.ndarray:
    """The zero-phase frequency response (rfft bins of an n-sample signal) of the half-band filter."""
    from scipy import fft as _fft

    h = _halfband()
    r = len(h) // 2
    c = np.zeros(n)
    c[: r + 1], c[n - r:] = h[r:], h[:r]
    return _fft.rfft(c).real.copy()  # the filter is symmetric: its centred response is real


@lru_cache(maxsize=8)
def _halfband_response32(n: int) -> np.ndarray:
    """Twice :func:`_halfband_response` in float32 (the 1:2 interpolation's gain)."""
    return (2 * _halfband_response(n)).astype(np.float32)


def _band_gain(f: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    lo, hi = band
    return np.clip((f - lo * 0.7) / (lo * 0.3), 0, 1) * np.clip((hi * 1.15 - f) / (hi * 0.15), 0, 1)


def telephone_rows(x: np.ndarray, bands: list | None, sr: int = 16000) -> np.ndarray:
    """Rows of (B, N) audio through :func:`telephone`, each with its band (``bands[b]``: (lo, hi) Hz or
    None; ``bands`` None: no band-pass).  A new (B, N) float32 array.

    At 16 kHz and even N the half-band filter of resample_poly runs in the spectrum that the band-pass
    already made (with the terms that wrap around the ends taken back out, so the result equals the
    zero-padded time-domain filter), the 2:1 decimation is a fold of that spectrum, and the 1:2
    interpolation after the codec is the same in reverse: FFTs over a few rows at a time instead of two
    polyphase filters per row.  Up to the codec all is float64, so its rounding decisions are those of
    the plain version."""
    if bands is None:
        bands = [None] * len(x)
    out = np.empty(np.shape(x), np.float32)
    for c in range(0, len(x), _CHUNK):  # a few rows at a time: the FFTs gain from several rows, the rest stays in cache
        out[c: c + _CHUNK] = _telephone_chunk(x[c: c + _CHUNK], bands[c: c + _CHUNK], sr)
    return out


def _telephone_chunk(x: np.ndarray, bands: list, sr: int) -> np.ndarray:
    from math import gcd

    from scipy import fft as _fft

    x = np.asarray(x, np.float64)
    B, n = x.shape
    g = gcd(8000, sr)
    up, down = 8000 // g, sr // g
    spec = None
    if any(bd is not None for bd in bands):
        f = np.fft.rfftfreq(n, 1 / sr)
        spec = _fft.rfft(x, axis=-1)
        spec *= np.stack([_band_gain(f, bd) if bd is not None else np.ones_like(f) for bd in bands])
        x = _fft.irfft(spec, n, axis=-1)
    peaks = [max(float(np.abs(row).max()), 1e-8) for row in x]
    out = np.empty((B, n), np.float32)
    if (up, down) != (1, 2) or n % 2 or n < 4 * len(_halfband()):  # the plain way, row by row
        from scipy.signal import resample_poly

        for b in range(B):
            back = resample_poly(mu_law(resample_poly(x[b] / peaks[b] * 0.5, up, down)), down, up)[:n]
            out[b] = np.pad(back, (0, n - len(back))) * peaks[b] / 0.5
        return out
    m = n // 2
    A, Bm = _halfband_edges()
    r = len(A)
    z = _fft.rfft(x, axis=-1) if spec is None else spec
    z *= _halfband_response(n)
    fold = np.conj(z[:, m - m // 2: m + 1][:, ::-1])  # bin m - k for k = 0..m//2
    fold += z[:, : m // 2 + 1]
    fold *= 0.5
    d = _fft.irfft(fold, m, axis=-1)  # z[2j]: every second sample of the filtered signal
    for b in range(B):
        d[b, : r // 2] -= (A @ x[b, -r:])[0::2]
        d[b, m - r // 2:] -= (Bm @ x[b, :r])[0::2]
        d[b] = d[b] / peaks[b] * 0.5
    q = mu_law(d)  # (B, m) float32
    y = _fft.rfft(q, axis=-1)
    u = np.empty((B, m + 1), y.dtype)  # the spectrum of q with zeros between its samples
    u[:, : m // 2 + 1] = y
    np.conj(y[:, m - (m // 2 + 1)::-1], out=u[:, m // 2 + 1:])
    u *= _halfband_response32(n)
    back = _fft.irfft(u, n, axis=-1)
    for b in range(B):
        ends = np.zeros((2, r))
        ends[0, 0::2], ends[1, 0::2] = q[b, m - r // 2:], q[b, : r // 2]  # q with zeros between, at both ends
        back[b, :r] -= 2 * (A @ ends[0])
        back[b, n - r:] -= 2 * (Bm @ ends[1])
        out[b] = back[b] * peaks[b] / 0.5
    return out


def telephone(wave: np.ndarray, sr: int = 16000, band: tuple[float, float] | None = (300.0, 3400.0)) -> np.ndarray:
    """A telephone channel: (optional) band-pass, down to 8 kHz, 8-bit mu-law, back up to ``sr``.
    Deterministic; the level is normalised to a 0.5 peak before the codec (as an AGC would)."""
    return telephone_rows(np.asarray(wave, np.float64)[None], None if band is None else [band], sr)[0]


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
           "warped_filterbank", "reverberate", "random_eq", "mu_law", "telephone", "hard_clip", "room_impulse",
           "reverb_rows", "eq_draw", "eq_rows", "telephone_rows",
           "power_spectrum", "frames", "AugmentConfig", "time_shift", "mix_noise", "rms", "spec_augment",
           "sample_spec_masks"]
